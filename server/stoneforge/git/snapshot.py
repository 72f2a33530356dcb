"""Recovery snapshots of a worktree's uncommitted work, and committing work an agent left behind.

`git stash create` ignores untracked files and `git stash -u` touches the user's stash list, so a
snapshot is built by hand: copy the worktree's index to a temporary index file (GIT_INDEX_FILE),
`git add -A` into it (tracked changes, deletions and untracked files; .gitignore respected),
write its tree and commit it with HEAD as parent. The commit is kept alive by
`refs/stoneforge/recovery/<task-id>/<n>`. Only once that ref is verified is the worktree reset.
Call it when no agent process is still writing in the worktree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from stoneforge.git.errors import GitError, GitLayerError, WorktreeDirty
from stoneforge.git.repo import git_path, identity_env, run_git, worktree_root
from stoneforge.git.slug import check_task_id

RECOVERY_PREFIX = "refs/stoneforge/recovery"

FileStatus = Literal["added", "modified", "deleted", "type-changed"]
_STATUS = {"A": "added", "M": "modified", "D": "deleted", "T": "type-changed"}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class SavedFile(_Model):
    path: str
    status: FileStatus


class Snapshot(_Model):
    """A saved recovery snapshot."""

    ref: str  # refs/stoneforge/recovery/<task-id>/<n>
    commit: str
    parent: str  # the worktree's HEAD when saved; `git diff <parent> <ref>` shows the work
    task_id: str
    number: int
    files: list[SavedFile]
    restored: bool  # whether the worktree was reset to `parent` afterwards

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


class SnapshotRef(_Model):
    ref: str
    commit: str
    task_id: str
    number: int


def recovery_ref(task_id: str | int, number: int) -> str:
    return f"{RECOVERY_PREFIX}/{check_task_id(task_id)}/{number}"


def list_snapshots(repo: Path | str, task_id: str | int | None = None) -> list[SnapshotRef]:
    """Recovery refs, of one task or all, ordered by task then number."""
    prefix = RECOVERY_PREFIX + (f"/{check_task_id(task_id)}/" if task_id is not None else "/")
    out = run_git(
        ["for-each-ref", "--format=%(objectname) %(refname)", prefix], repo
    ).stdout.splitlines()
    snaps: list[SnapshotRef] = []
    for line in out:
        oid, _, ref = line.partition(" ")
        tid, _, num = ref[len(RECOVERY_PREFIX) + 1 :].rpartition("/")
        if num.isdigit():
            snaps.append(SnapshotRef(ref=ref, commit=oid, task_id=tid, number=int(num)))
    return sorted(snaps, key=lambda s: (s.task_id, s.number))


def save_snapshot(
    worktree: Path | str,
    task_id: str | int,
    *,
    restore: bool = True,
    message: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Snapshot | None:
    """Save every uncommitted change of `worktree` under a new recovery ref; None when clean.

    With `restore` (default) the worktree is then reset to HEAD: `reset --hard` and `clean -fd`
    (ignored files are neither saved nor removed). The stash list is never touched. `env` is
    added to every git call's environment (task clones pass hardened config).
    """
    tid = check_task_id(task_id)
    root = worktree_root(worktree)
    head = _rev(root, "HEAD", env)
    if head is None:
        raise GitLayerError(f"cannot snapshot {root}: its branch has no commit yet")
    tree = _worktree_tree(root, env)
    if tree == _rev(root, "HEAD^{tree}", env):
        return None
    files = _changed_files(root, head, tree, env)
    body = message or f"stoneforge recovery snapshot of task {tid}"
    listing = "\n".join(f"{f.status}: {f.path}" for f in files[:200])
    commit = run_git(
        ["commit-tree", tree, "-p", head, "-F", "-"],
        root,
        input=f"{body}\n\n{listing}\n",
        env={**identity_env(root), **(env or {})},
    ).stdout.strip()
    ref, number = _create_next_ref(root, tid, commit, env)
    # Only reset once the ref provably holds the commit and its tree: nothing is lost if we die.
    if _rev(root, ref, env) != commit or _rev(root, f"{ref}^{{tree}}", env) != tree:
        raise GitLayerError(
            f"snapshot ref {ref} did not verify; the worktree {root} was left as is"
        )
    if restore:
        run_git(["reset", "--hard", "--quiet", "HEAD"], root, env=env)
        run_git(["clean", "-f", "-d", "--quiet"], root, env=env)
    return Snapshot(
        ref=ref,
        commit=commit,
        parent=head,
        task_id=tid,
        number=number,
        files=files,
        restored=restore,
    )


def _rev(root: Path, rev: str, env: Mapping[str, str] | None = None) -> str | None:
    proc = run_git(["rev-parse", "--verify", "--quiet", rev], root, check=False, env=env)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _worktree_tree(root: Path, extra_env: Mapping[str, str] | None = None) -> str:
    """Tree of the worktree's files as `git add -A` sees them, via a throwaway index."""
    real_index = git_path(root, "index")
    tmpdir = tempfile.mkdtemp(prefix="sf-snapshot-", dir=real_index.parent)
    tmp_index = os.path.join(tmpdir, "index")
    try:
        if real_index.exists():
            # Starting from the real index keeps its stat cache: only changed files get hashed.
            shutil.copyfile(real_index, tmp_index)
        env = {**(extra_env or {}), "GIT_INDEX_FILE": tmp_index}
        if not real_index.exists():
            run_git(["read-tree", "HEAD"], root, env=env)
        run_git(["add", "--all", "--", ":/"], root, env=env)
        return run_git(["write-tree"], root, env=env).stdout.strip()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _changed_files(
    root: Path, head: str, tree: str, env: Mapping[str, str] | None = None
) -> list[SavedFile]:
    out = run_git(
        ["diff-tree", "-r", "--no-renames", "--name-status", "-z", head, tree], root, env=env
    ).stdout
    fields = [f for f in out.split("\0") if f]
    files: list[SavedFile] = []
    for status, path in zip(fields[::2], fields[1::2], strict=False):
        files.append(SavedFile(path=path, status=_STATUS.get(status[:1], "modified")))
    return files


def _create_next_ref(
    root: Path, tid: str, commit: str, env: Mapping[str, str] | None = None
) -> tuple[str, int]:
    for _ in range(10):
        existing = [s.number for s in list_snapshots(root, tid)]
        number = max(existing, default=0) + 1
        ref = recovery_ref(tid, number)
        # Empty old value: create only if absent, so two savers never overwrite each other.
        proc = run_git(
            ["update-ref", "-m", f"stoneforge: snapshot task {tid}", ref, commit, ""],
            root,
            check=False,
            env=env,
        )
        if proc.returncode == 0:
            return ref, number
    raise GitError(["update-ref", ref, commit, ""], proc.returncode, proc.stderr, root)


def apply_snapshot(worktree: Path | str, ref: str) -> list[str]:
    """Bring a snapshot's changes back into a clean `worktree` (uncommitted, as they were).

    Three-way applies the snapshot's diff against its parent onto the current HEAD, so commits
    made since the snapshot are kept. Returns the paths left with conflict markers (empty when it
    applied cleanly).
    """
    root = worktree_root(worktree)
    dirty = run_git(["status", "--porcelain", "-z"], root).stdout
    if dirty:
        raise WorktreeDirty(root, sorted(f[3:] for f in dirty.split("\0") if f))
    proc = run_git(["cherry-pick", "--no-commit", ref], root, check=False, env=identity_env(root))
    conflicted = run_git(["diff", "--name-only", "-z", "--diff-filter=U"], root).stdout
    paths = sorted(p for p in conflicted.split("\0") if p)
    if proc.returncode != 0 and not paths:
        raise GitError(["cherry-pick", "--no-commit", ref], proc.returncode, proc.stderr, root)
    if not paths:
        # Unstage: the work comes back as plain uncommitted changes, new files untracked again.
        run_git(["reset", "--quiet"], root)
    with contextlib.suppress(GitError):
        run_git(["cherry-pick", "--quit"], root)  # forget the sequencer state either way
    return paths


def commit_all(
    worktree: Path | str,
    message: str,
    *,
    run_hooks: bool = False,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Commit everything uncommitted in `worktree` (untracked included); None when clean.

    Used for work an agent left uncommitted. Hooks are skipped by default: a failing hook must not
    drop the work, and the merge queue's checks judge it anyway.
    """
    root = worktree_root(worktree)
    run_git(["add", "--all", "--", ":/"], root, env=env)
    staged = run_git(["diff", "--cached", "--quiet"], root, check=False, env=env)
    if staged.returncode == 0:
        return None
    args = ["commit", "--quiet", "--no-edit", "-F", "-"]
    if not run_hooks:
        args.insert(1, "--no-verify")
    run_git(
        args,
        root,
        input=message if message.endswith("\n") else message + "\n",
        env={**identity_env(root), **(env or {})},
    )
    return run_git(["rev-parse", "HEAD"], root, env=env).stdout.strip()


def save_head(worktree: Path | str, task_id: str | int) -> SnapshotRef:
    """Keep the worktree's HEAD commit alive under a new recovery ref (e.g. before the worktree is
    put back on its task branch, so commits made on another branch or a detached HEAD survive)."""
    tid = check_task_id(task_id)
    root = worktree_root(worktree)
    head = _rev(root, "HEAD")
    if head is None:
        raise GitLayerError(f"cannot save HEAD of {root}: it has no commit yet")
    ref, number = _create_next_ref(root, tid, head)
    return SnapshotRef(ref=ref, commit=head, task_id=tid, number=number)


def checked_out_branch(worktree: Path | str) -> str | None:
    """The branch checked out in ``worktree`` (short name), or None for a detached HEAD."""
    proc = run_git(["symbolic-ref", "-q", "--short", "HEAD"], worktree, check=False)
    return proc.stdout.strip() or None
