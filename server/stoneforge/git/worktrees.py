"""One worktree and branch per task: create (idempotently), list, remove, delete merged branches.

The rule that matters: removing a worktree never loses work. Uncommitted changes block removal
(snapshot them first, see `snapshot.py`), and the task branch is only deleted once it is merged
into the target branch, or when the caller forces it because the task was cancelled.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from stoneforge.git.errors import GitError, WorktreeDirty, WorktreeError
from stoneforge.git.repo import (
    branch_exists,
    find_repo_root,
    full_branch_ref,
    ref_value,
    resolve_commit,
    run_git,
    short_branch,
)
from stoneforge.git.slug import task_branch, worktree_path

_P = ParamSpec("_P")
_R = TypeVar("_R")
# git reads its worktree administration files without locking: a `git worktree list` running while
# another thread's `git worktree add` is half done fails ("failed to read .../commondir"). All
# worktree administration in this process goes through one lock.
_ADMIN_LOCK = threading.RLock()


def _serialized(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _ADMIN_LOCK:
            return fn(*args, **kwargs)

    return wrapper


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class WorktreeInfo(_Model):
    """One entry of `git worktree list --porcelain`."""

    path: Path
    head: str | None = None  # None for an unborn branch
    branch: str | None = None  # short name; None when detached or bare
    bare: bool = False
    detached: bool = False
    locked: bool = False
    prunable: bool = False  # git knows its directory is gone


class TaskWorktree(_Model):
    """A task's worktree as `create_task_worktree` / `ensure_worktree` left it."""

    path: Path
    branch: str
    head: str  # branch tip when the call returned
    created: bool  # False when it already existed (idempotent re-create)
    reattached: bool = False  # branch existed, its directory was gone and was checked out again


class RemovedWorktree(_Model):
    """What `remove_worktree` did."""

    path: Path
    branch: str | None
    worktree_removed: bool
    branch_deleted: bool
    reason: str  # human-readable: why the branch was (not) deleted


BranchPolicy = Literal["if-merged", "force", "never"]


@_serialized
def list_worktrees(repo: Path | str) -> list[WorktreeInfo]:
    """All worktrees of the repository, the main worktree first."""
    out = run_git(["worktree", "list", "--porcelain", "-z"], repo).stdout
    result: list[WorktreeInfo] = []
    entry: dict[str, object] = {}
    for field in out.split("\0"):
        if not field:  # an empty field ends an entry
            if entry:
                result.append(WorktreeInfo.model_validate(entry))
                entry = {}
            continue
        key, _, value = field.partition(" ")
        if key == "worktree":
            entry["path"] = Path(value)
        elif key == "HEAD":
            entry["head"] = None if set(value) == {"0"} else value
        elif key == "branch":
            entry["branch"] = short_branch(value)
        elif key in ("bare", "detached", "locked", "prunable"):
            entry[key] = True
    if entry:
        result.append(WorktreeInfo.model_validate(entry))
    return result


def find_worktree(
    repo: Path | str, *, path: Path | None = None, branch: str | None = None
) -> WorktreeInfo | None:
    """The worktree at `path` or with `branch` checked out, or None."""
    want = _canon(path) if path is not None else None
    for wt in list_worktrees(repo):
        if want is not None and _canon(wt.path) == want:
            return wt
        if branch is not None and wt.branch == short_branch(branch):
            return wt
    return None


def _canon(path: Path) -> Path:
    # Resolve what exists; a removed directory keeps its absolute spelling.
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def dirty_files(worktree: Path | str, *, untracked: bool = True) -> list[str]:
    """Paths with uncommitted changes (staged, unstaged, and untracked not ignored by default)."""
    mode = "--untracked-files=all" if untracked else "--untracked-files=no"
    out = run_git(
        ["status", "--porcelain=v1", "-z", "--no-renames", "--ignore-submodules=none", mode],
        worktree,
        env={"GIT_OPTIONAL_LOCKS": "0"},  # read-only: don't fight the user's git for index.lock
    ).stdout
    return sorted({f[3:] for f in out.split("\0") if len(f) > 3})


def create_task_worktree(
    repo: Path | str,
    task_id: str | int,
    title: str,
    *,
    worktree_dir: Path | str,
    target: str,
) -> TaskWorktree:
    """Worktree `<worktree_dir>/<task-id>-<slug>` on branch `sf/<task-id>-<slug>`.

    New branches start at the current tip of `target`. Idempotent; see `ensure_worktree`. The
    orchestrator should store the returned `branch` and `path` and pass them to `ensure_worktree`
    later, since a renamed task gives another slug.
    """
    return ensure_worktree(
        repo,
        worktree_path(worktree_dir, task_id, title),
        task_branch(task_id, title),
        start_point=target,
    )


@_serialized
def ensure_worktree(
    repo: Path | str, path: Path | str, branch: str, *, start_point: str
) -> TaskWorktree:
    """Make sure `branch` is checked out at `path`; create what is missing.

    - worktree already there with that branch: returned as is (`created=False`);
    - branch exists, directory gone: stale registration pruned, branch checked out again
      (`reattached=True`), so commits made before are kept;
    - neither exists: branch created at `start_point`'s current commit and checked out.
    Refuses (WorktreeError) when the path holds something else or the branch is checked out at
    another live path.
    """
    repo = Path(repo)
    path = _canon(Path(path))
    branch = short_branch(branch)
    at_path = find_worktree(repo, path=path)
    if at_path is not None:
        if at_path.path.is_dir():
            if at_path.branch == branch:
                return TaskWorktree(
                    path=path, branch=branch, head=_head(path), created=False, reattached=False
                )
            raise WorktreeError(
                f"{path} is already a worktree of branch {at_path.branch or '(detached)'}, "
                f"not {branch}"
            )
        _prune(repo)
    elsewhere = find_worktree(repo, branch=branch)
    if elsewhere is not None:
        if elsewhere.path.is_dir():
            raise WorktreeError(f"branch {branch} is already checked out at {elsewhere.path}")
        _prune(repo)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise WorktreeError(f"cannot create worktree at {path}: the path exists and is not empty")
    path.parent.mkdir(parents=True, exist_ok=True)
    if branch_exists(repo, branch):
        run_git(["worktree", "add", "--", str(path), branch], repo)
        return TaskWorktree(
            path=path, branch=branch, head=_head(path), created=True, reattached=True
        )
    start = resolve_commit(repo, start_point)
    # Branch from the commit, not the name: no upstream tracking, and no race with a moving tip.
    run_git(["worktree", "add", "--no-track", "-b", branch, "--", str(path), start], repo)
    return TaskWorktree(path=path, branch=branch, head=start, created=True, reattached=False)


@_serialized
def checkout_detached(
    repo: Path | str, path: Path | str, commit: str, *, discard_changes: bool = True
) -> Path:
    """A Stoneforge-owned scratch worktree (a steward's) at `commit`, detached; made if missing.

    With `discard_changes` (default) the result is exactly a fresh checkout of `commit`: an
    unfinished merge, modified files and untracked files are thrown away, ignored ones (build
    output, caches) too, so nothing a previous run left can change what the next one sees.
    """
    repo = Path(repo)
    path = _canon(Path(path))
    oid = resolve_commit(repo, commit)
    wt = find_worktree(repo, path=path)
    if wt is not None and not path.is_dir():
        _prune(repo)
        wt = None
    if wt is None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise WorktreeError(
                f"cannot create worktree at {path}: the path exists and is not empty"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        run_git(["worktree", "add", "--detach", "--", str(path), oid], repo)
        return path
    if discard_changes:
        run_git(["merge", "--abort"], path, check=False)
        run_git(["reset", "--hard", "--quiet"], path)
    else:
        dirty = dirty_files(path)
        if dirty:
            raise WorktreeDirty(path, dirty)
    run_git(["checkout", "--quiet", "--detach", oid], path)
    if discard_changes:
        # After the checkout: files it left behind (ignored in one commit, tracked in the other)
        # go too. -ff also removes nested repositories, -x ignored files.
        run_git(["reset", "--hard", "--quiet", oid], path)
        run_git(["clean", "-ffdx", "--quiet"], path)
    return path


def _head(worktree: Path) -> str:
    return run_git(["rev-parse", "HEAD"], worktree).stdout.strip()


def _prune(repo: Path) -> None:
    run_git(["worktree", "prune"], repo)


def is_merged(repo: Path | str, branch: str, target: str) -> bool:
    """True when every commit of `branch` is reachable from `target`."""
    tip = resolve_commit(repo, full_branch_ref(branch))
    base = resolve_commit(repo, target)
    proc = run_git(["merge-base", "--is-ancestor", tip, base], repo, check=False)
    if proc.returncode not in (0, 1):
        raise GitError(
            ["merge-base", "--is-ancestor", tip, base], proc.returncode, proc.stderr, repo
        )
    return proc.returncode == 0


def delete_branch(repo: Path | str, branch: str, *, target: str, force: bool = False) -> bool:
    """Delete `branch` if it is merged into `target` (or `force`); returns whether it was deleted.

    Never deletes a branch checked out in a worktree. The deletion is a compare-and-swap on the tip
    we checked, so a commit that lands on the branch meanwhile keeps it alive.
    """
    branch = short_branch(branch)
    ref = full_branch_ref(branch)
    tip = ref_value(repo, ref)
    if tip is None:
        return False
    holder = find_worktree(repo, branch=branch)
    if holder is not None and holder.path.is_dir():
        raise WorktreeError(f"branch {branch} is checked out at {holder.path}; remove that first")
    if not force and not is_merged(repo, branch, target):
        return False
    proc = run_git(["update-ref", "-d", ref, tip], repo, check=False)
    return proc.returncode == 0


@_serialized
def remove_worktree(
    repo: Path | str,
    path: Path | str,
    *,
    target: str,
    branch_policy: BranchPolicy = "if-merged",
    discard_changes: bool = False,
) -> RemovedWorktree:
    """Remove the worktree at `path`; then maybe its branch.

    Uncommitted changes raise WorktreeDirty unless `discard_changes` (snapshot them first: the
    orchestrator calls `save_snapshot` before discarding). `branch_policy`: `if-merged` deletes
    the branch only when merged into `target`; `force` deletes it anyway (task cancelled);
    `never` keeps it. A missing worktree is not an error (idempotent).
    """
    repo = Path(repo)
    path = _canon(Path(path))
    if path == _canon(find_repo_root(repo)):
        raise WorktreeError(f"refusing to remove the main worktree {path}")
    wt = find_worktree(repo, path=path)
    branch = wt.branch if wt is not None else None
    removed = False
    if wt is not None:
        if wt.locked:
            raise WorktreeError(f"worktree {path} is locked; `git worktree unlock` it first")
        if path.is_dir():
            if not discard_changes:
                dirty = dirty_files(path)
                if dirty:
                    raise WorktreeDirty(path, dirty)
            # --force is needed for untracked files even after the check above; -f twice would
            # also drop a locked one, which we refused already.
            run_git(["worktree", "remove", "--force", "--", str(path)], repo)
        else:
            _prune(repo)
        removed = True
    if branch is None:
        return RemovedWorktree(
            path=path,
            branch=None,
            worktree_removed=removed,
            branch_deleted=False,
            reason="no branch was checked out there",
        )
    if ref_value(repo, full_branch_ref(branch)) is None:
        deleted, reason = False, "branch was already gone"
    elif branch_policy == "never":
        deleted, reason = False, "kept: branch policy 'never'"
    elif branch_policy == "force":
        deleted = delete_branch(repo, branch, target=target, force=True)
        reason = "deleted: forced (task cancelled)" if deleted else "kept: it moved meanwhile"
    else:
        deleted = delete_branch(repo, branch, target=target, force=False)
        reason = (
            f"deleted: merged into {target}"
            if deleted
            else f"kept: it has commits not merged into {target}"
        )
    return RemovedWorktree(
        path=path, branch=branch, worktree_removed=removed, branch_deleted=deleted, reason=reason
    )
