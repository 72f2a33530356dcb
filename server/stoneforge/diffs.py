"""The diffs the editor shows: a merge request's files, and one commit's files.

Each file comes with its whole text on both sides (None for a side where it does not exist), so
the editor can open its own diff view without more requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoneforge.errors import NotFoundError
from stoneforge.git.repo import resolve_commits, run_git
from stoneforge.models import MergeRequest, MergeStatus

#: git's empty tree: what a root commit's diff is taken against.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def merge_diff(root: Path, mr: MergeRequest, target: str) -> dict[str, Any]:
    """The files a merge request changes: each at the merge base and at the branch tip.

    A landed merge request's branch is usually deleted: its diff comes from the commits
    recorded for it (the branch tip it was made for, and the target before it landed), so
    it reads the same after landing as before.
    """
    head = merge_request_head(root, mr)
    before = target
    if mr.status == MergeStatus.MERGED and mr.merged_commit:
        # The target just before this landing: the merged commit's first parent.
        parent = f"{mr.merged_commit}^1"
        before = resolve_commits(root, [parent]).get(parent) or target
    # A stacked branch's own changes start at its stack base, not at the target.
    base = mr.base_commit or run_git(["merge-base", before, head], root).stdout.strip()
    files = files_between(root, base, head)
    return {"id": mr.id, "base": base, "head": head, "target": target, "files": files}


def commit_diff(root: Path, commit: str) -> dict[str, Any]:
    """The files one commit changes against its first parent (a root commit: against
    nothing), in the shape of :func:`merge_diff`, for links to commits in the editor."""
    head = resolve_commits(root, [commit]).get(commit)
    if head is None:
        raise NotFoundError(f"no commit {commit!r} in {root}")
    parents = run_git(["rev-list", "--parents", "-n", "1", head], root).stdout.split()
    base = parents[1] if len(parents) > 1 else EMPTY_TREE
    subject = run_git(["log", "-1", "--format=%s", head], root).stdout.strip()
    files = files_between(root, base, head)
    return {"commit": head, "subject": subject, "base": base, "head": head, "files": files}


def files_between(root: Path, base: str, head: str) -> list[dict[str, Any]]:
    """Each file that differs, with its text on both sides (None for the missing side)."""
    listing = run_git(["diff", "--name-status", "--no-renames", "-z", base, head], root)
    fields = [f for f in listing.stdout.split("\0") if f]
    return [
        {
            "path": path,
            "status": status_code,
            "original": None if status_code == "A" else _show(root, base, path),
            "modified": None if status_code == "D" else _show(root, head, path),
        }
        for status_code, path in zip(fields[::2], fields[1::2], strict=True)
    ]


def merge_request_head(root: Path, mr: MergeRequest) -> str:
    """The commit a merge request brings: its branch while it is open (a steward may add a
    conflict resolution to it), the recorded head once landed or when the branch is gone."""
    found = resolve_commits(root, [mr.branch, mr.head_commit or ""])
    branch, recorded = found.get(mr.branch), found.get(mr.head_commit or "")
    landed = mr.status == MergeStatus.MERGED
    head = (recorded or branch) if landed else (branch or recorded)
    if head is None:
        raise NotFoundError(
            f"merge request {mr.id}: its branch {mr.branch} no longer exists in {root} "
            "and no commit of it was recorded, so there is no diff to show"
        )
    return head


def _show(root: Path, commit: str, path: str) -> str:
    return run_git(["show", f"{commit}:{path}"], root).stdout
