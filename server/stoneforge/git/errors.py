"""Exceptions of the git layer.

One base class, `GitLayerError`, so callers (orchestrator, CLI, language server) can catch every
git-layer failure in one place and show its message as is: each message says what was attempted,
where, and why it failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stoneforge.errors import StoneforgeError


class GitLayerError(StoneforgeError):
    """Base class of every error raised by `stoneforge.git`."""


class GitError(GitLayerError):
    """A git command exited non-zero (or could not be started)."""

    def __init__(
        self,
        args: Sequence[str],
        returncode: int,
        stderr: str,
        cwd: Path | str | None = None,
        stdout: str = "",
    ) -> None:
        self.command = ["git", *args]
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout
        self.cwd = str(cwd) if cwd is not None else None
        where = f" (in {self.cwd})" if self.cwd else ""
        detail = self.stderr or "no error output"
        super().__init__(
            f"`{' '.join(self.command)}` failed with exit code {returncode}{where}: {detail}"
        )


class GitVersionError(GitLayerError):
    """The installed git is missing or older than the version Stoneforge needs."""


class NotARepository(GitLayerError):
    """The path is not inside a (non-bare) git repository."""


class RefNotFound(GitLayerError):
    """A branch, ref or commit name does not resolve."""


class UnsafePath(GitLayerError):
    """A computed worktree path would escape the worktree directory."""


class WorktreeError(GitLayerError):
    """A worktree cannot be created or removed as asked (occupied path, branch elsewhere, ...)."""


class WorktreeDirty(WorktreeError):
    """The worktree holds uncommitted changes, and the operation would lose them."""

    def __init__(self, path: Path, files: list[str]) -> None:
        self.path = path
        self.files = files
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        super().__init__(f"worktree {path} has uncommitted changes: {shown}")


class TargetMoved(GitLayerError):
    """Compare-and-swap of the target ref failed: it no longer points where we expected."""

    def __init__(self, ref: str, expected: str, actual: str | None) -> None:
        self.ref = ref
        self.expected = expected
        self.actual = actual
        now = actual if actual else "nothing (ref deleted)"
        super().__init__(
            f"{ref} moved while landing: expected {expected}, found {now}; nothing was changed"
        )


class NotFastForward(GitLayerError):
    """Landing would rewrite history: the new commit does not descend from the current tip."""


class CheckoutDirty(GitLayerError):
    """The target branch is checked out in a worktree with local changes, so it was not landed."""

    def __init__(self, ref: str, worktree: Path, files: list[str], detail: str = "") -> None:
        self.ref = ref
        self.worktree = worktree
        self.files = files
        shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"not landed: {ref} is checked out in {worktree}, which has local changes in "
            f"{shown or 'its working tree'}{extra}; commit or stash them, then retry"
        )
