"""What keeps a checkout of the target from following a landing.

Landing moves the target ref and then brings each checkout of it along with
`git read-tree -u -m <old> <new>`. That step refuses when the checkout holds uncommitted changes to
tracked files, or untracked paths the new commit would overwrite or delete: a file where it adds a
file, a file where it adds a directory (`docs` vs `docs/index.md`), or files inside a directory
where it adds a file. `checkout_block` finds all of those before the ref moves, so a landing that
would fail is never attempted (and never undone). Our own listing names every path at once; git's
dry run of the very same step (`read-tree -n`, on a copy of the index so the user's index is never
locked or written) is the final word, for whatever the listing does not model (ignored files
inside such a directory, say).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stoneforge.git.repo import run_git
from stoneforge.git.worktrees import dirty_files

#: How many paths a one-line reason names before it says "and N more".
SHOWN = 5

_QUOTED = re.compile(r"'([^']+)'")


class CheckoutBlock(BaseModel):
    """Why one checkout would refuse to follow a landing from `old` to `new`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    worktree: Path
    changed: list[str] = Field(default_factory=list)  # tracked files with uncommitted changes
    in_the_way: list[str] = Field(default_factory=list)  # untracked paths the landing would clobber
    detail: str = ""  # git's own refusal, when it names nothing the listing found

    @property
    def files(self) -> list[str]:
        return sorted(set(self.changed) | set(self.in_the_way))

    @property
    def reason(self) -> str:
        """One line naming the checkout and the files: `<path> has uncommitted changes in a.py`."""
        parts = []
        if self.changed:
            parts.append(f"uncommitted changes in {shown(self.changed)}")
        if self.in_the_way:
            parts.append(f"untracked files in the way of the landing: {shown(self.in_the_way)}")
        if not parts:
            return f"{self.worktree} cannot follow the landing: {self.detail or 'git refused'}"
        return f"{self.worktree} has {' and '.join(parts)}"


def shown(paths: list[str]) -> str:
    more = len(paths) - SHOWN
    return ", ".join(paths[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def checkout_block(repo: Path | str, worktree: Path, old: str, new: str) -> CheckoutBlock | None:
    """What in `worktree` (a checkout of the target at `old`) stops it moving to `new`, if any."""
    changed = dirty_files(worktree, untracked=False)
    in_the_way = _in_the_way(repo, worktree, old, new)
    if changed or in_the_way:
        return CheckoutBlock(worktree=worktree, changed=changed, in_the_way=in_the_way)
    refusal = _dry_run(worktree, old, new)
    if refusal is None:
        return None
    names = sorted(
        {m for line in refusal.splitlines() for m in _QUOTED.findall(line)}
        | {line.strip() for line in refusal.splitlines() if line.startswith("\t")}
    )
    first = next((line for line in refusal.splitlines() if line.strip()), "git refused")
    return CheckoutBlock(
        worktree=worktree,
        in_the_way=names,
        detail=first.removeprefix("error: ").removeprefix("fatal: "),
    )


def _in_the_way(repo: Path | str, worktree: Path, old: str, new: str) -> list[str]:
    """Paths not tracked at `old` (untracked or ignored) that moving to `new` would clobber.

    For each path the landing adds: something already there (a file or symlink; a directory
    only for what inside it is not tracked), or a file or symlink where the landing needs a
    directory (`docs` when it adds `docs/index.md`), unless that file goes away in `new`.
    """
    out = run_git(
        ["diff", "--name-status", "--no-renames", "--diff-filter=AD", "-z", old, new], repo
    ).stdout.split("\0")
    added = {path for status, path in zip(out[::2], out[1::2], strict=False) if status == "A"}
    deleted = {path for status, path in zip(out[::2], out[1::2], strict=False) if status == "D"}
    found: set[str] = set()
    for path in sorted(added):
        target = worktree / path
        if _is_real_dir(target):
            found.update(_untracked_under(worktree, path))
        elif target.is_symlink() or target.exists():
            found.add(path)
        parts = path.split("/")
        for n in range(1, len(parts)):
            prefix = "/".join(parts[:n])
            spot = worktree / prefix
            if _is_real_dir(spot) or prefix in deleted:
                continue
            if spot.is_symlink() or spot.exists():
                found.add(prefix)
            break  # nothing further down can exist under a missing or non-directory path
    return sorted(found)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _untracked_under(worktree: Path, directory: str) -> list[str]:
    """Files under `directory` that git does not track, ignored ones included (they block too)."""
    out = run_git(["ls-files", "-z", "--others", "--", directory], worktree).stdout
    return [p for p in out.split("\0") if p]


def _dry_run(worktree: Path, old: str, new: str) -> str | None:
    """git's own verdict on `read-tree -u -m old new` in `worktree`: None, or its refusal."""
    index = Path(
        run_git(
            ["rev-parse", "--path-format=absolute", "--git-path", "index"], worktree
        ).stdout.strip()
    )
    with tempfile.TemporaryDirectory(prefix="sf-land-") as scratch:
        copy = Path(scratch) / "index"
        if index.exists():
            shutil.copyfile(index, copy)
        env = {"GIT_INDEX_FILE": str(copy)}
        run_git(["update-index", "-q", "--refresh"], worktree, env=env, check=False)
        proc = run_git(["read-tree", "-n", "-u", "-m", old, new], worktree, env=env, check=False)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip() or f"`git read-tree -u -m` would fail (exit {proc.returncode})"
