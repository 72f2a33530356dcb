"""One clone per task that shares the repository's objects; its branch is fetched back from it.

A linked worktree writes into the repository's own `.git` (objects, refs, the index of every
worktree), so an agent that can commit in one can also move the target branch. A task clone has a
`.git` of its own whose `objects/info/alternates` names the repository's object directory (what
`git clone --shared` does): it reads every object of the repository without copying any, and a
commit there writes only into the clone. The orchestrator then fetches the task branch and the
task's recovery refs back into the repository (`publish`), which is the only way they get there.

The clone is made by hand (`git init` + alternates + two refs) rather than by `git clone`: no
`origin` remote to push to, no copies of other tasks' branches, and a config we wrote ourselves.
An agent may still change files under its clone's `.git`; before the orchestrator runs git there
(committing leftovers, a snapshot), `reseal` puts our config back and removes what could send git
elsewhere, and our commands carry `HARDENED_CONFIG`, so nothing the agent wrote runs outside its
sandbox.

Clones are slow to check out on a large repository, so `clone_pool.ClonePool` keeps some ready.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from stoneforge.git.errors import GitError, RefNotFound, WorktreeError
from stoneforge.git.ref_files import branch_commits
from stoneforge.git.repo import (
    OID,
    branch_exists,
    full_branch_ref,
    ref_value,
    repository_git_dir,
    resolve_commit,
    run_git,
    run_git_past_others,
    short_branch,
)
from stoneforge.git.slug import check_task_id
from stoneforge.git.snapshot import (
    RECOVERY_PREFIX,
    Snapshot,
    SnapshotRef,
    commit_all,
    save_head,
    save_snapshot,
)
from stoneforge.git.worktrees import delete_branch, find_worktree, remove_worktree

if TYPE_CHECKING:
    from stoneforge.git.clone_pool import ClonePool

log = logging.getLogger("stoneforge.git.task_clone")

#: Marks a clone as ours in its config (`stoneforge.taskClone = true`).
MARKER_KEY = "stoneforge.taskClone"

# Passed on the command line of every git call the orchestrator makes in a task clone: command-line
# config outranks the clone's own, so hooks, an fsmonitor or a nested repository's config written
# by the agent never run outside its sandbox.
HARDENED_CONFIG: dict[str, str] = {
    "core.hooksPath": os.devnull,
    "core.fsmonitor": "false",
    "diff.ignoreSubmodules": "all",
    "submodule.recurse": "false",
    "status.submoduleSummary": "false",
}
# Copied from the repository's own config into each clone, so commits there look the same.
_INHERITED_KEYS = ("user.name", "user.email", "core.autocrlf", "core.eol", "core.filemode")


def hardened_env() -> dict[str, str]:
    """`GIT_CONFIG_COUNT`/`KEY_n`/`VALUE_n` for `HARDENED_CONFIG` (as `git -c` would pass it)."""
    env = {"GIT_CONFIG_COUNT": str(len(HARDENED_CONFIG))}
    for i, (key, value) in enumerate(HARDENED_CONFIG.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class TaskCheckout(_Model):
    """A task's checkout as `ensure_task_clone` left it."""

    path: Path
    branch: str
    head: str
    created: bool  # False when it was already there (a later attempt of the task)
    from_pool: bool = False  # a prepared clone was taken from the pool
    #: The merge base with the target when known without asking git (a new branch at its tip).
    base: str | None = None
    is_clone: bool = True  # False: a linked worktree made before task clones existed


class Published(_Model):
    """What `publish` brought back into the repository."""

    branch: str
    head: str | None  # the branch tip in the repository afterwards
    refs: list[str]  # every ref that was updated


def is_task_clone(path: Path | str) -> bool:
    """True for a directory holding a clone made by this module (a real `.git` directory)."""
    git_dir = Path(path) / ".git"
    if git_dir.is_symlink() or not git_dir.is_dir():
        return False
    config = git_dir / "config"
    return config.is_file() and "[stoneforge]" in config.read_text(errors="replace")


def _object_format(repo: Path) -> str:
    proc = run_git(["rev-parse", "--show-object-format"], repo, check=False)
    return proc.stdout.strip() or "sha1"


@functools.lru_cache(maxsize=16)
def _config_text(repo: Path) -> str:
    """The whole `.git/config` of a clone: written at creation and again by every `reseal`.

    Made once per repository and process: it costs a few git calls, and dispatch is timed.
    """
    fmt = _object_format(repo)
    lines = [
        "[core]",
        f"\trepositoryformatversion = {0 if fmt == 'sha1' else 1}",
        "\tbare = false",
        "\tlogallrefupdates = true",
    ]
    if fmt != "sha1":
        lines += ["[extensions]", f"\tobjectformat = {fmt}"]
    sections: dict[str, list[str]] = {}
    listing = run_git(["config", "--local", "--list", "-z"], repo, check=False).stdout
    local = dict(entry.partition("\n")[::2] for entry in listing.split("\0") if entry)
    for key in _INHERITED_KEYS:
        value = local.get(key, "")
        if value and "\n" not in value:
            section, _, name = key.partition(".")
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            sections.setdefault(section, []).append(f'\t{name} = "{escaped}"')
    for section, entries in sections.items():
        lines += [f"[{section}]", *entries]
    lines += ["[stoneforge]", "\ttaskClone = true", f'\trepository = "{repo}"', ""]
    return "\n".join(lines)


def clone_git(
    clone: Path, args: list[str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_git(args, clone, env=hardened_env(), check=check)


def reseal(repo: Path | str, clone: Path | str) -> None:
    """Undo what an agent could have changed in its clone's `.git` to steer our own git calls.

    Our config is written back, hooks are dropped, and a `commondir`/`gitdir` file (which would
    send git to another directory's config) is removed. Refuses a `.git` that is no longer a real
    directory.
    """
    repo, clone = Path(repo), Path(clone)
    git_dir = clone / ".git"
    if git_dir.is_symlink() or not git_dir.is_dir():
        raise WorktreeError(f"{clone}: .git is no longer the clone's own directory; not using it")
    for name in ("commondir", "gitdir", "config.worktree"):
        with contextlib.suppress(FileNotFoundError):
            (git_dir / name).unlink()
    # What is already as it should be is left alone: a file write costs a fraction of a
    # millisecond here, and a clone taken from the pool is sealed already (dispatch is timed).
    hooks = git_dir / "hooks"
    if hooks.is_symlink() or (hooks.exists() and not hooks.is_dir()):
        hooks.unlink()
    elif hooks.is_dir() and any(hooks.iterdir()):
        shutil.rmtree(hooks, ignore_errors=True)
    hooks.mkdir(exist_ok=True)
    repo = repo.resolve()
    _write_if_changed(git_dir / "config", _config_text(repo))
    alternates = git_dir / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    _write_if_changed(alternates, f"{repository_git_dir(repo) / 'objects'}\n")


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if not path.is_symlink() and path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: written below
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a symlink is replaced, not written through
    path.write_text(text)


def make_clone(repo: Path | str, path: Path | str, commit: str | None = None) -> Path:
    """A new clone at `path` sharing `repo`'s objects, checked out (detached) at `commit`."""
    repo, path = Path(repo), Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise WorktreeError(
            f"cannot create a task clone at {path}: the path exists and is not empty"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _object_format(repo)
    run_git(["init", "--quiet", "--template=", f"--object-format={fmt}", str(path)], repo)
    reseal(repo, path)
    if commit is not None:  # resolved in the repository: the new clone has no refs yet
        clone_git(path, ["checkout", "--quiet", "--detach", resolve_commit(repo, commit)])
    return path


def detached_head(clone: Path) -> str | None:
    """The commit a pool clone's detached HEAD names, read from the file (no git process)."""
    try:
        text = (clone / ".git" / "HEAD").read_text().strip()
    except OSError:
        return None
    return text if OID.fullmatch(text) else None


def advance(clone: Path | str, commit: str, *, detach: bool = True) -> None:
    """Move a clean clone's checkout from its HEAD to `commit`, writing only the files that
    differ (`read-tree -m -u`: no full index refresh, unlike checkout), HEAD detached there
    (``detach=False``: the caller points HEAD at a branch at `commit` next, so HEAD may be left
    as it was after a read-tree)."""
    clone = Path(clone)
    head = detached_head(clone) or _clone_head(clone)
    if head == commit:
        return
    if head is None:
        clone_git(clone, ["checkout", "--quiet", "--force", "--detach", commit])
        return
    try:
        clone_git(clone, ["read-tree", "-m", "-u", head, commit])
    except GitError:  # not clean after all (or HEAD unknown here): a full checkout then
        clone_git(clone, ["checkout", "--quiet", "--force", "--detach", commit])
        return
    if detach:
        clone_git(clone, ["update-ref", "--no-deref", "HEAD", commit])


def ensure_task_clone(
    repo: Path | str,
    path: Path | str,
    branch: str,
    *,
    start_point: str,
    pool: ClonePool | None = None,
    start_at: str | None = None,
) -> TaskCheckout:
    """Make sure `path` is a task clone with `branch` checked out; create what is missing.

    The branch starts where the repository's `branch` is (a later attempt continues its commits),
    else at `start_point`'s current commit. The clone also gets `refs/heads/<start_point>` at the
    target's tip, so the agent can diff against it. A linked worktree left at `path` by an older
    version is kept as it is (`is_clone=False`). ``start_at``: the commit a new branch starts at
    instead of the target's tip (a stacked branch: its blockers' heads).
    """
    repo, path = Path(repo), Path(path).absolute()
    branch = short_branch(branch)
    branch_ref = full_branch_ref(branch)
    target_ref = full_branch_ref(start_point)
    found = branch_commits(repo, [target_ref, branch_ref])  # no git process: dispatch is timed
    target_tip = found[target_ref]
    if target_tip is None:
        raise RefNotFound(f"{start_point!r} does not name a commit in {repo}")
    existing = found[branch_ref]
    if is_task_clone(path):
        # The clone is where the branch's work lives; the repository only has what was published.
        reseal(repo, path)
        _set_refs(path, {_target_ref(start_point): target_tip})
        return TaskCheckout(path=path, branch=branch, head=_clone_head(path) or "", created=False)
    if path.is_dir() and find_worktree(repo, path=path) is not None:
        head = run_git(["rev-parse", "HEAD"], path).stdout.strip()
        return TaskCheckout(path=path, branch=branch, head=head, created=False, is_clone=False)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise WorktreeError(
            f"cannot create a task clone at {path}: the path exists and is not empty"
        )
    start = existing or start_at or target_tip
    taken = pool.take(want=start) if pool is not None else None
    if taken is not None:
        # Made a task checkout while still under its `.taken` name, and only then moved to
        # `path`: a process killed half-way leaves a `.taken` clone (swept at the next start),
        # never a checkout at `path` without its branch.
        reseal(repo, taken)
        # Right after a landing the pool may not have followed the target yet: the files that
        # changed are written now (one git call). HEAD is detached there until the refs below.
        advance(taken, start, detach=False)
        _write_new_refs(taken, {branch_ref: start, _target_ref(start_point): target_tip})
        (taken / ".git" / "HEAD").write_text(f"ref: {branch_ref}\n")  # `git symbolic-ref`'s job
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            path.rmdir()  # an empty leftover directory
        taken.rename(path)
    else:
        make_clone(repo, path)
        clone_git(path, ["checkout", "--quiet", "-B", branch, start])
        _set_refs(path, {_target_ref(start_point): target_tip})
    return TaskCheckout(
        path=path,
        branch=branch,
        head=start,
        created=True,
        from_pool=taken is not None,
        base=start if start == target_tip else None,
    )


def _clone_head(clone: Path) -> str | None:
    proc = clone_git(clone, ["rev-parse", "--verify", "--quiet", "HEAD"], check=False)
    return proc.stdout.strip() or None


def _target_ref(target: str) -> str | None:
    """`refs/heads/<target>` in a clone, for a target that is a branch name."""
    name = short_branch(target)
    return None if name.startswith("refs/") else f"refs/heads/{name}"


def _write_new_refs(clone: Path, refs: dict[str | None, str]) -> None:
    """Create refs in a clone that has none of them yet (one just taken from the pool) by
    writing their loose ref files: what `update-ref` does there, less a git process (dispatch is
    timed) and the reflog. None keys are skipped."""
    git_dir = clone / ".git"
    for ref, oid in refs.items():
        if ref is None:
            continue
        if not ref.startswith("refs/") or ".." in ref or not OID.fullmatch(oid):
            raise WorktreeError(f"{clone}: not a ref to write: {ref!r} -> {oid!r}")
        path = git_dir / ref
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{oid}\n")


def _set_refs(clone: Path, refs: dict[str | None, str]) -> None:
    """Set refs of a clone in one `git update-ref --stdin` (None keys are skipped)."""
    lines = "".join(f"update {ref} {oid}\n" for ref, oid in refs.items() if ref is not None)
    if lines:
        run_git(["update-ref", "--stdin"], clone, input=lines, env=hardened_env())


def publish(
    repo: Path | str, clone: Path | str, branch: str, task_id: str | int | None = None
) -> Published:
    """Fetch the task branch (and the task's recovery refs) from its clone into the repository.

    The clone's branch is the truth for a task branch: it is taken as is, rewritten history
    included; no other ref of the clone is ever read. A linked worktree has nothing to publish.
    """
    repo, clone = Path(repo), Path(clone)
    branch = short_branch(branch)
    if not is_task_clone(clone):
        return Published(branch=branch, head=ref_value(repo, full_branch_ref(branch)), refs=[])
    ref = full_branch_ref(branch)
    specs = [f"+{ref}:{ref}"]
    if task_id is not None:
        prefix = f"{RECOVERY_PREFIX}/{check_task_id(task_id)}"
        specs.append(f"+{prefix}/*:{prefix}/*")
    before = _refs(repo, [ref, *specs[1:]])
    if ref_value(clone, ref) is None:
        return Published(branch=branch, head=ref_value(repo, ref), refs=[])
    run_git_past_others(
        ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", str(clone), *specs],
        repo,
        env=hardened_env(),
    )
    after = _refs(repo, [ref, *specs[1:]])
    changed = sorted(name for name, oid in after.items() if before.get(name) != oid)
    return Published(branch=branch, head=after.get(ref), refs=changed)


def _refs(repo: Path, patterns: list[str]) -> dict[str, str]:
    bases = [p.split(":", 1)[0].lstrip("+").removesuffix("/*") for p in patterns]
    out = run_git(["for-each-ref", "--format=%(objectname) %(refname)", *bases], repo).stdout
    found = {}
    for line in out.splitlines():
        oid, _, name = line.partition(" ")
        found[name] = oid
    return found


def commit_leftovers(repo: Path | str, clone: Path | str, message: str) -> str | None:
    """`commit_all` in a task checkout, after `reseal` and with hardened config."""
    if is_task_clone(clone):
        reseal(repo, clone)
    return commit_all(clone, message, env=hardened_env())


def know_recovery_refs(repo: Path | str, clone: Path | str, task_id: str | int) -> None:
    """Give a task clone the task's recovery refs the repository keeps and it lacks.

    Recovery refs are numbered per task, and a clone numbers a new one after those it knows;
    publishing then forces the clone's refs into the repository. A clone made again for the
    task (the old one removed), or a scratch clone, would otherwise reuse a number and
    overwrite the saved work of an earlier attempt. Call before saving in a clone.
    """
    repo, clone = Path(repo), Path(clone)
    if not is_task_clone(clone):
        return  # a linked worktree shares the repository's refs
    prefix = f"{RECOVERY_PREFIX}/{check_task_id(task_id)}/*"
    local = _refs(clone, [prefix])
    missing: dict[str | None, str] = {
        name: oid for name, oid in _refs(repo, [prefix]).items() if name not in local
    }
    _set_refs(clone, missing)


def save_head_of_task(repo: Path | str, clone: Path | str, task_id: str | int) -> SnapshotRef:
    """`save_head` in a task checkout, numbered after every recovery ref of the task."""
    know_recovery_refs(repo, clone, task_id)
    return save_head(clone, task_id)


def snapshot(
    repo: Path | str, clone: Path | str, task_id: str | int, *, restore: bool = True
) -> Snapshot | None:
    """`save_snapshot` in a task checkout, published into the repository at once."""
    if is_task_clone(clone):
        reseal(repo, clone)
        know_recovery_refs(repo, clone, task_id)
    snap = save_snapshot(clone, task_id, restore=restore, env=hardened_env())
    if snap is not None and is_task_clone(clone):
        branch = clone_git(Path(clone), ["symbolic-ref", "--quiet", "--short", "HEAD"], check=False)
        publish(repo, clone, branch.stdout.strip() or "HEAD", task_id)
    return snap


def remove_task_checkout(
    repo: Path | str, path: Path | str, task_id: str | int, *, target: str
) -> str:
    """Remove a task's checkout once its branch is merged; returns what was done.

    Uncommitted work goes to a recovery ref (published) first, the branch is published again,
    and it is deleted only when merged into `target`. A linked worktree goes the old way.
    """
    repo, path = Path(repo), Path(path)
    if not is_task_clone(path):
        removed = remove_worktree(
            repo, path, target=target, branch_policy="if-merged", discard_changes=True
        )
        return removed.reason
    with contextlib.suppress(GitError, WorktreeError):
        snapshot(repo, path, task_id, restore=False)
    proc = clone_git(path, ["symbolic-ref", "--quiet", "--short", "HEAD"], check=False)
    branch = proc.stdout.strip()
    if branch:
        publish(repo, path, branch, task_id)
    shutil.rmtree(path)
    if branch and branch_exists(repo, branch):
        deleted = delete_branch(repo, branch, target=target)
        return f"clone removed; branch {branch} " + ("deleted" if deleted else "kept (not merged)")
    return "clone removed"
