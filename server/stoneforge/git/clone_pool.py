"""Task clones kept ready: checked out at the target's tip before anyone asks for one.

Clones are slow to check out on a large repository (0.25-6 s for 5,000 files on a busy machine),
so a `ClonePool` keeps one per agent slot checked out at the target's tip, brought up to date
after each landing (or ahead of it: at the candidate the merge queue is checking); taking one is a rename and its refs written as files (one git call in all,
to resolve the target), plus a `read-tree` of only the files that changed when the target moved
since.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stoneforge.background import foreground
from stoneforge.git.ref_files import branch_tip
from stoneforge.git.task_clone import advance, clone_git, detached_head, make_clone

log = logging.getLogger("stoneforge.git.clone_pool")

#: Where a repository's clone pool lives, inside the worktree directory.
POOL_DIRNAME = ".pool"
DEFAULT_POOL_SIZE = 2
#: At most this many slots' worth of prepared clones: each is a full checkout on disk, and
#: making them competes with everything else at the orchestrator's start.
MAX_POOL_SLOTS = 4
RACY_GIT_S = 1.1  # git's timestamps are whole seconds on some filesystems


def pool_size(max_concurrent: int) -> int:
    """Clones to keep prepared: one per agent slot (a burst of dispatches takes them all) and
    one more, capped, since each is a full checkout on disk."""
    return min(max_concurrent, MAX_POOL_SLOTS) + 1


class ClonePool:
    """Clones checked out at the target's tip, ready to become task checkouts.

    `take` hands one over and asks for a refill; a background thread keeps `size` clones ready
    and brings them to the target's tip after it moves (`refill`), one at a time, so a take
    finds the others. While the merge queue checks a candidate on the tip (`expect`), all but
    one of them go to that candidate instead: the tip it becomes if it lands. When none is ready, a take returns None at once and the caller makes a
    clone of its own: waiting for the filler's clone instead was measured to be slower when
    tasks arrive faster than clones are made (the filler makes them one at a time). A clone is
    claimed by renaming its directory under the lock:
    `<name>.ready` (takeable), `<name>.busy` (the filler is updating it), `<name>.building`,
    `<name>.taken` (on its way to becoming a task checkout).
    """

    def __init__(self, repo: Path | str, directory: Path | str, target: str, size: int) -> None:
        self.repo = Path(repo)
        self.directory = Path(directory)
        self.target = target
        self.size = size
        self._lock = threading.Lock()
        self._filler: threading.Thread | None = None
        #: A refill was asked for: the filler goes round (again); it also ends the filler's wait.
        self._wanted = threading.Event()
        #: Clones built a moment ago whose index is not refreshed yet, with when they were built.
        self._racy: list[tuple[Path, float]] = []
        self._stopped = False
        self._seq = itertools.count()
        #: (base, candidate): the merge queue checks `candidate`, built on `base`, to land next.
        self._landing: tuple[str, str] | None = None

    def ready(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.name.endswith(".ready"))

    def sweep(self) -> None:
        """Remove what a process that died while filling or taking left behind."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            if entry.name.endswith((".building", ".taken", ".busy")):
                shutil.rmtree(entry, ignore_errors=True)

    def take(self, want: str | None = None) -> Path | None:
        """A ready clone (one checked out at `want` if there is one), renamed `.taken`."""
        taken = None
        with self._lock:
            ready = self.ready()
            if ready:
                pick = next((p for p in ready if detached_head(p) == want), ready[0])
                taken = _renamed(pick, ".taken")
                pick.rename(taken)
        self.refill()
        return taken

    def refill(self, *, wait: bool = False) -> None:
        """Bring the pool to `size` clones at the target's tip, in the background (`wait`: block
        until done). Asked for while the filler runs, it goes round once more."""
        with self._lock:
            if self.size <= 0:
                return
            self._stopped = False
            self._wanted.set()
            if self._filler is None or not self._filler.is_alive():
                self._filler = threading.Thread(
                    target=self._fill, name="stoneforge-clone-pool", daemon=True
                )
                self._filler.start()
            filler = self._filler
        if wait:
            filler.join()

    def expect(self, base: str | None, candidate: str | None) -> None:
        """The merge queue checks ``candidate`` (built on ``base``) and lands it next if it
        passes: while the target is still at ``base``, the filler keeps one clone at the tip and
        brings the others to ``candidate``, so the dependents its landing unblocks find their
        checkout ready. None: no such candidate (any more). Only a clone's own HEAD decides what a
        take does with it, so a clone at a candidate that never lands goes back to the tip then."""
        landing = (base, candidate) if base and candidate and base != candidate else None
        with self._lock:
            if landing == self._landing:
                return
            self._landing = landing
        self.refill()

    def stop(self) -> None:
        """Make no more clones (the orchestrator stopped); what is under way finishes."""
        with self._lock:
            self._stopped = True

    def _fill(self) -> None:
        while True:
            with self._lock:
                if not self._wanted.is_set() or self._stopped:
                    self._filler = None  # under the lock: a refill from now on starts another
                    return
                self._wanted.clear()
            try:
                self._fill_once()
            except Exception:  # the pool only saves time: dispatch clones directly without it
                log.warning("could not prepare a clone for the pool", exc_info=True)

    def _fill_once(self) -> None:
        tip = branch_tip(self.repo, self.target)
        landing = self._landing
        # The candidate only while the target is at its base: once it landed it is the tip.
        ahead = landing[1] if landing is not None and landing[0] == tip else None
        clones = self.ready()
        heads = {clone: detached_head(clone) for clone in clones}
        # With a candidate ahead, one clone stays at the tip for tasks dispatched meanwhile.
        keeper = next((c for c in clones if heads[c] == tip), clones[0] if clones else None)
        for ready in clones:
            if self._stopped or self._wanted.is_set():
                return  # the tip moved again (or we are done): start over
            want = tip if ahead is None or ready == keeper else ahead
            if heads[ready] != want:
                self._update(ready, want)
        while not (self._stopped or self._wanted.is_set()) and len(self.ready()) < self.size:
            name = f"{os.getpid()}-{next(self._seq)}"
            building = self.directory / f"{name}.building"
            shutil.rmtree(building, ignore_errors=True)
            ready = self.directory / f"{name}.ready"
            at_tip = any(detached_head(c) == tip for c in self.ready())
            foreground.wait_idle()
            make_clone(self.repo, building, ahead if ahead is not None and at_tip else tip)
            building.rename(ready)  # takeable now; a take before the refresh below is fine
            self._racy.append((ready, time.monotonic()))
        self._refresh_racy()

    def _refresh_racy(self) -> None:
        """Files written in the same second as the index are "racily clean": git would re-read
        every one at the first status. Refreshed a moment later, the index vouches for them, and
        git only stats them. The wait gives way to a refill asked for meanwhile (the target
        moved, a candidate is checked): that comes first, these are refreshed after it."""
        while self._racy and not (self._stopped or self._wanted.is_set()):
            ready, built_at = self._racy[0]
            wait = built_at + RACY_GIT_S - time.monotonic()
            if wait > 0 and self._wanted.wait(wait):
                return
            self._racy.pop(0)
            self._claimed(ready, lambda busy: clone_git(busy, ["update-index", "-q", "--refresh"]))

    def _update(self, ready: Path, tip: str) -> None:
        foreground.wait_idle()
        self._claimed(ready, lambda busy: advance(busy, tip))

    def _claimed(self, ready: Path, action: Callable[[Path], object]) -> None:
        """Run `action` on a ready clone out of take()'s reach; drop the clone if it fails."""
        busy = _renamed(ready, ".busy")
        with self._lock:
            if not ready.is_dir():
                return  # taken meanwhile
            ready.rename(busy)
        try:
            action(busy)
        except Exception:
            shutil.rmtree(busy, ignore_errors=True)
            raise
        busy.rename(ready)


def _renamed(path: Path, suffix: str) -> Path:
    return path.with_name(path.name.rsplit(".", 1)[0] + suffix)


_POOLS: dict[tuple[Path, Path], ClonePool] = {}
_POOLS_LOCK = threading.Lock()


def _pool_key(repo: Path | str, worktree_dir: Path | str) -> tuple[Path, Path]:
    return Path(repo).resolve(), Path(worktree_dir).resolve()


def _existing_pool(repo: Path | str, worktree_dir: Path | str) -> ClonePool | None:
    """This process's pool of `repo` under `worktree_dir`, if one was made (none is made here)."""
    with _POOLS_LOCK:
        return _POOLS.get(_pool_key(repo, worktree_dir))


def pool_for(
    repo: Path | str, worktree_dir: Path | str, target: str, size: int | None = None
) -> ClonePool:
    """The process-wide pool of `repo` under `worktree_dir` (made, and filling, on first use;
    `size` changes it, None keeps it)."""
    key = _pool_key(repo, worktree_dir)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = ClonePool(
                key[0], key[1] / POOL_DIRNAME, target, DEFAULT_POOL_SIZE if size is None else size
            )
            pool.sweep()
        elif size is None or size == pool.size:
            pool.target = target
            return pool
        else:
            pool.size = size
    pool.target = target
    pool.refill()
    return pool


def refresh_pool(repo: Path | str, worktree_dir: Path | str) -> None:
    """The target moved (a landing): bring this process's pool, if any, to its new tip."""
    pool = _existing_pool(repo, worktree_dir)
    if pool is not None:
        pool.refill()


def expect_landing(
    repo: Path | str, worktree_dir: Path | str, base: str | None, candidate: str | None
) -> None:
    """The merge queue checks ``candidate`` on the target's tip ``base`` (None: no candidate any
    more): this process's pool, if any, prepares clones at it (`ClonePool.expect`)."""
    pool = _existing_pool(repo, worktree_dir)
    if pool is not None:
        pool.expect(base, candidate)


def stop_pool(repo: Path | str, worktree_dir: Path | str) -> None:
    """The orchestrator stopped: this process's pool, if any, makes no more clones."""
    pool = _existing_pool(repo, worktree_dir)
    if pool is not None:
        pool.stop()
