"""Who owns which check checkout and which check process: small JSON files in `.stoneforge/run/`.

Each steward has a check checkout of its own, `<worktreeDir>/_steward-<id>`, and says so in
`run/steward-<id>.json` (its process's pid and start time) before it creates it; with look-ahead
(`merge.parallelChecks`) it has one more per extra slot, `_steward-<id>.<slot>`. While one of its
checks runs, `run/check-<id>.json` (`check-<id>.<slot>.json`) names that check's process group,
command and commit. A steward
whose process is gone cannot clean up after itself, so every steward, before it first uses its own
checkout, sweeps: it kills the checks of dead stewards (by process group, and on Linux by the
marker variable every process of a check inherits) and then removes their checkouts, and the
old shared `_steward` one. Stewards of live processes, this one's included, are never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from stoneforge.git.worktrees import list_worktrees, remove_worktree
from stoneforge.orchestrator.checks import CHECK_MARKER_ENV, kill_group

log = logging.getLogger("stoneforge.steward")

RUN_DIR = Path(".stoneforge") / "run"
CHECKOUT_PREFIX = "_steward"
#: Between a steward's id and the slot number in the names of its extra check checkouts.
SLOT_SEP = "."
_M = TypeVar("_M", bound=BaseModel)


def checkout_name(steward_id: str, slot: int = 0) -> str:
    suffix = f"{SLOT_SEP}{slot}" if slot else ""
    return f"{CHECKOUT_PREFIX}-{steward_id}{suffix}"


class Owner(BaseModel):
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    start: str | None = None

    @classmethod
    def current(cls) -> Owner:
        return cls(pid=os.getpid(), start=_start_time(os.getpid()))

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: it exists
        start = _start_time(self.pid)
        return self.start is None or start is None or start == self.start


class StewardRecord(BaseModel):
    steward_id: str
    owner: Owner
    checkout: str


class CheckRecord(BaseModel):
    steward_id: str
    owner: Owner
    pgid: int
    command: str
    commit: str


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces


class CheckRegistry:
    """The run files of one steward, and the sweep that clears up after dead ones."""

    def __init__(self, root: Path, worktree_dir: Path, steward_id: str) -> None:
        self.root = root
        self.run_dir = root / RUN_DIR
        self.worktree_dir = worktree_dir
        self.steward_id = steward_id

    @property
    def checkout(self) -> Path:
        return self.checkout_for(0)

    def checkout_for(self, slot: int) -> Path:
        """The check checkout of look-ahead slot ``slot`` (0: the steward's first one)."""
        return self.worktree_dir / checkout_name(self.steward_id, slot)

    def _steward_file(self, steward_id: str) -> Path:
        return self.run_dir / f"steward-{steward_id}.json"

    def _check_file(self, steward_id: str, slot: int = 0) -> Path:
        suffix = f"{SLOT_SEP}{slot}" if slot else ""
        return self.run_dir / f"check-{steward_id}{suffix}.json"

    # -- this steward ------------------------------------------------------------------------

    def register(self) -> None:
        """Claim this steward's checkout (before it exists, so no sweep takes it)."""
        record = StewardRecord(
            steward_id=self.steward_id, owner=Owner.current(), checkout=str(self.checkout)
        )
        _write(self._steward_file(self.steward_id), record)

    def unregister(self) -> None:
        """This steward stopped: its checkout is left for the next steward's sweep to remove."""
        self.check_ended()
        for path in self.run_dir.glob(f"check-{self.steward_id}{SLOT_SEP}*.json"):
            path.unlink(missing_ok=True)
        self._steward_file(self.steward_id).unlink(missing_ok=True)

    def check_started(self, pgid: int, command: str, commit: str, slot: int = 0) -> None:
        record = CheckRecord(
            steward_id=self.steward_id,
            owner=Owner.current(),
            pgid=pgid,
            command=command,
            commit=commit,
        )
        _write(self._check_file(self.steward_id, slot), record)

    def check_ended(self, slot: int = 0) -> None:
        self._check_file(self.steward_id, slot).unlink(missing_ok=True)

    # -- the others --------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Kill the checks of stewards whose process is gone, then remove their checkouts.

        Returns a line for each thing done, for the orchestrator's notes.
        """
        done: list[str] = []
        live = {self.steward_id}
        for path in sorted(self.run_dir.glob("steward-*.json")):
            record = _read(path, StewardRecord)
            if record is not None and record.owner.alive():
                live.add(record.steward_id)
            elif record is None or record.steward_id != self.steward_id:
                path.unlink(missing_ok=True)
        for path in sorted(self.run_dir.glob("check-*.json")):
            record = _read(path, CheckRecord)
            if record is not None and (record.steward_id in live or record.owner.alive()):
                continue
            if record is not None:
                killed = kill_check(record.steward_id, record.pgid)
                if killed:
                    done.append(
                        f"killed a check left running by stopped steward {record.steward_id}: "
                        f"`{record.command}` on {record.commit[:10]} (pids {killed})"
                    )
            path.unlink(missing_ok=True)
        for checkout in self._checkouts():
            name = checkout.name
            steward_id = name[len(CHECKOUT_PREFIX) + 1 :] if name != CHECKOUT_PREFIX else ""
            steward_id = steward_id.split(SLOT_SEP, 1)[0]  # a look-ahead slot's checkout
            if steward_id in live:
                continue
            if steward_id:
                kill_check(steward_id, None)  # a check whose run file was never written
            self._remove(checkout)
            done.append(f"removed the check checkout {name} of a steward that is gone")
        return done

    def _checkouts(self) -> list[Path]:
        """Check checkouts on disk or registered with git (a directory may be gone)."""
        found: dict[str, Path] = {}
        if self.worktree_dir.is_dir():
            for entry in self.worktree_dir.iterdir():
                if _is_checkout_name(entry.name):
                    found[entry.name] = entry
        with contextlib.suppress(Exception):  # not a git repository any more: nothing registered
            for wt in list_worktrees(self.root):
                if wt.path.parent == self.worktree_dir.resolve() and _is_checkout_name(
                    wt.path.name
                ):
                    found.setdefault(wt.path.name, wt.path)
        return sorted(found.values())

    def _remove(self, checkout: Path) -> None:
        try:
            remove_worktree(
                self.root, checkout, target="HEAD", branch_policy="never", discard_changes=True
            )
        except Exception:
            log.exception("could not remove the check checkout %s with git", checkout)
        if checkout.exists():
            shutil.rmtree(checkout, ignore_errors=True)


def kill_check(steward_id: str, pgid: int | None) -> list[int]:
    """Kill a dead steward's check: its process group, and every process that carries its
    marker (found on Linux through /proc, also when it left the group). Returns the pids."""
    killed: list[int] = []
    proc = Path("/proc")
    marker = f"{CHECK_MARKER_ENV}={steward_id}".encode()
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pid = int(entry.name)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill_group(os.getpgid(pid))
                    os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    elif pgid is not None:  # no /proc: trust the recorded group (its leader was the check)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return killed
        kill_group(pgid)
        killed.append(pgid)
    return killed


def _is_checkout_name(name: str) -> bool:
    return name == CHECKOUT_PREFIX or name.startswith(CHECKOUT_PREFIX + "-")


def _write(path: Path, record: BaseModel) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.model_dump(mode="json")) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a file


def _read(path: Path, model: type[_M]) -> _M | None:
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None
