"""Stacked branches: a task's branch built on its blockers' unlanded branch heads.

A dependent task may start before its blockers land (`orchestrator.stacking`): its branch starts
at its *stack base*, the blocker's head (a merge of the heads when there are several; the
target's tip joins when some blocker already landed). Its own work is then ``base..head``.
When a blocker lands, changes or is replaced, the branch is *restacked*: its own commits are
rebased onto the new base, so nothing of a blocker's replaced work stays in it.

Everything here runs git in the task's clone (or a temporary one sharing the repository's
objects) and publishes the branch back, like any other change to a task branch.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stoneforge.git.errors import GitLayerError
from stoneforge.git.merge import is_ancestor
from stoneforge.git.repo import (
    common_git_dir,
    full_branch_ref,
    identity_env,
    resolve_commit,
    run_git,
)
from stoneforge.git.snapshot import SnapshotRef
from stoneforge.git.task_clone import (
    commit_leftovers,
    hardened_env,
    is_task_clone,
    make_clone,
    publish,
    reseal,
    save_head_of_task,
)


class RestackConflict(GitLayerError):
    """The branch's own commits (or the blockers' heads) do not apply cleanly on the new base."""

    def __init__(self, message: str, files: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.files = list(files)


def stack_base(repo: Path | str, target: str, heads: Sequence[str], *, on_target: bool) -> str:
    """The commit a stacked branch's own work starts from.

    ``heads``: the unlanded blockers' heads; ``on_target``: some blocker has landed, so the
    target's tip joins them. No heads: the target's tip. A head that is an ancestor of another
    adds nothing (a chain t1 <- t2 <- t3: t3 stacks on t2's head, which holds t1's work).
    Several: a chain of merge commits of them, or RestackConflict when they conflict.
    """
    repo = Path(repo)
    parents = [resolve_commit(repo, h) for h in dict.fromkeys(heads)]
    if on_target or not parents:
        parents.append(resolve_commit(repo, target))
    parents = list(dict.fromkeys(parents))
    kept = [
        p
        for p in parents
        if not any(o != p and is_ancestor(repo, p, o) for o in parents)  # subsumed by another
    ]
    base = kept[0]
    for other in kept[1:]:
        proc = run_git(
            ["merge-tree", "--write-tree", "--name-only", base, other], repo, check=False
        )
        lines = proc.stdout.splitlines()
        if proc.returncode != 0:
            files = lines[1 : lines.index("")] if "" in lines else lines[1:]
            raise RestackConflict(
                f"the heads {base[:10]} and {other[:10]} of the blockers conflict", files
            )
        base = run_git(
            ["commit-tree", lines[0], "-p", base, "-p", other],
            repo,
            input="stoneforge: stack base (the blockers' heads merged)\n",
            env=identity_env(repo),
        ).stdout.strip()
    return base


def own_commits(repo: Path | str, base: str, head: str) -> int:
    """How many commits of ``head`` are its own on top of ``base``."""
    out = run_git(["rev-list", "--count", f"{base}..{head}"], repo).stdout.strip()
    return int(out or 0)


def restack(
    repo: Path | str,
    clone: Path | str | None,
    branch: str,
    task_id: str,
    *,
    old_base: str,
    new_base: str,
) -> str:
    """Rebase the branch's own commits (``old_base..branch``) onto ``new_base``; the new head.

    In the task's clone when there is one (its work left uncommitted is committed first; the
    caller makes sure no agent runs in it), else in a temporary clone; the branch is then
    published into the repository. On a conflict nothing changes and RestackConflict says
    which files.
    """
    repo = Path(repo)
    with _checkout(repo, clone, branch) as work:
        commit_leftovers(repo, work, f"stoneforge: work of task {task_id} before its restack")
        head = run_git(["rev-parse", "HEAD"], work).stdout.strip()
        if old_base == new_base or head == new_base:
            return head
        if not is_ancestor(work, old_base, head):
            raise RestackConflict(
                f"{branch} does not hold {old_base[:10]}, the base it was stacked on"
            )
        env = {**hardened_env(), **identity_env(repo)}
        proc = run_git(
            ["rebase", "--quiet", "--onto", new_base, old_base, branch], work, env=env, check=False
        )
        if proc.returncode != 0:
            files = run_git(["diff", "--name-only", "--diff-filter=U"], work, check=False)
            run_git(["rebase", "--abort"], work, env=env, check=False)
            raise RestackConflict(
                f"the commits of {branch} do not apply on {new_base[:10]}", files.stdout.split()
            )
        publish(repo, work, branch, task_id)
        return run_git(["rev-parse", "HEAD"], work).stdout.strip()


def reset_to_base(
    repo: Path | str, clone: Path | str | None, branch: str, task_id: str, new_base: str
) -> SnapshotRef:
    """A restack that conflicted: the branch's work is kept at a recovery ref and the branch
    starts again at ``new_base`` (the next attempt re-applies the work from the ref)."""
    repo = Path(repo)
    with _checkout(repo, clone, branch) as work:
        commit_leftovers(repo, work, f"stoneforge: work of task {task_id} before its restack")
        saved = save_head_of_task(repo, work, task_id)
        run_git(["reset", "--quiet", "--hard", new_base], work, env=hardened_env())
        publish(repo, work, branch, task_id)
        return saved


def keep_work(repo: Path | str, clone: Path | str | None, branch: str, task_id: str) -> SnapshotRef:
    """The branch's work (leftovers committed) kept at a new recovery ref, published."""
    repo = Path(repo)
    with _checkout(repo, clone, branch) as work:
        commit_leftovers(repo, work, f"stoneforge: work of task {task_id}, kept")
        saved = save_head_of_task(repo, work, task_id)
        publish(repo, work, branch, task_id)
        return saved


class _checkout:  # noqa: N801 - used as a context manager, like contextlib's
    """The task's clone (resealed, on its branch), or a temporary clone removed afterwards."""

    def __init__(self, repo: Path, clone: Path | str | None, branch: str) -> None:
        self.repo, self.branch = repo, branch
        self.clone = Path(clone) if clone is not None else None
        self.temporary: Path | None = None

    def __enter__(self) -> Path:
        if self.clone is not None and is_task_clone(self.clone):
            reseal(self.repo, self.clone)
            return self.clone
        head = resolve_commit(self.repo, full_branch_ref(self.branch))
        scratch = common_git_dir(self.repo) / "stoneforge-restack"
        scratch.mkdir(parents=True, exist_ok=True)
        self.temporary = Path(tempfile.mkdtemp(dir=scratch)) / "clone"
        make_clone(self.repo, self.temporary, head)
        run_git(["checkout", "--quiet", "-B", self.branch, head], self.temporary)
        return self.temporary

    def __exit__(self, *exc: object) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary.parent, ignore_errors=True)
