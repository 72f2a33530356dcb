"""The exact commit that will land, and landing it.

A candidate is `git merge-tree --write-tree <base> <branch>` (no checkout, no index) turned into a
merge commit with `git commit-tree -p <base> -p <branch>`; `<base>` is the target tip or, for a
batch, the previous candidate. Landing is `git update-ref <ref> <new> <old>`: a compare-and-swap,
so a target moved by anyone else is detected (`TargetMoved`), never overwritten. When the target
branch is checked out in a worktree, that checkout is checked clean first, then the ref moves, then
its files follow (`read-tree -u -m old new`); a dirty checkout blocks landing (`CheckoutDirty`).

The conflict ladder's second rung lives here too: a real `git merge` in the steward's worktree
with the repository-wide rerere cache, which merge-tree does not consult.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stoneforge.git.blockers import CheckoutBlock, checkout_block
from stoneforge.git.conflicts import (
    ConflictedFile,
    MergeTreeResult,
    describe_conflicts,
    parse_merge_tree,
)
from stoneforge.git.errors import (
    CheckoutDirty,
    GitError,
    NotFastForward,
    RefNotFound,
    TargetMoved,
    WorktreeDirty,
)
from stoneforge.git.repo import (
    full_branch_ref,
    identity_env,
    ref_value,
    resolve_commit,
    resolve_commits,
    run_git,
    short_branch,
    worktree_root,
)
from stoneforge.git.worktrees import dirty_files, list_worktrees


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class CandidateResult(_Model):
    """Outcome of merging one branch onto a base commit."""

    clean: bool
    commit: str | None  # the candidate merge commit; None when conflicted
    tree: str  # merged tree (holding conflict markers when not clean)
    base: str  # first parent: the target tip, or the previous candidate when stacking
    branch: str
    branch_tip: str  # second parent
    task_id: str
    already_merged: bool = False  # branch tip already in base: `commit` is `base` itself
    conflicts: list[ConflictedFile] = Field(default_factory=list)
    messages: list[str] = Field(default_factory=list)

    @property
    def conflicted_paths(self) -> list[str]:
        return [c.path for c in self.conflicts]


class StackItem(_Model):
    task_id: str
    title: str
    branch: str


class StackResult(_Model):
    """Several branches merged one after another onto `base` (a batch)."""

    base: str
    commit: str  # top of the stack; `base` when nothing merged cleanly
    merged: list[CandidateResult]  # in order; each one's base is the previous one's commit
    conflicted: list[CandidateResult]  # skipped: they conflict with base plus those before them


class LandResult(_Model):
    ref: str
    old: str
    new: str
    updated_worktrees: list[Path] = Field(default_factory=list)  # checkouts moved along


class WorktreeMergeResult(_Model):
    """A real `git merge` in a worktree (the rerere rung of the conflict ladder)."""

    commit: str | None  # merge commit when everything resolved; None while conflicts remain
    conflicted: list[str]  # paths still unmerged (merge left in progress for an agent)
    resolved_by_rerere: list[str]  # paths git reported conflicting but rerere resolved


def merge_message(task_id: str, title: str, branch: str) -> str:
    return f"Merge task {task_id}: {title}\n\nBranch: {branch}\n"


def merge_tree(
    repo: Path | str, ours: str, theirs: str, *, with_hunks: bool = True, with_text: bool = True
) -> MergeTreeResult:
    """`git merge-tree --write-tree` of two commits; conflicted files described when asked."""
    args = ["merge-tree", "--write-tree", "--messages", "-z", ours, theirs]
    proc = run_git(args, repo, check=False)
    if proc.returncode not in (0, 1):  # 0 clean, 1 conflicts, anything else: git failed
        raise GitError(args, proc.returncode, proc.stderr, repo)
    result, _ = parse_merge_tree(proc.stdout.split("\0"), 0, clean=proc.returncode == 0)
    if with_hunks and not result.clean:
        describe_conflicts(repo, [result], with_text=with_text)
    return result


def is_ancestor(repo: Path | str, ancestor: str, descendant: str) -> bool:
    proc = run_git(["merge-base", "--is-ancestor", ancestor, descendant], repo, check=False)
    if proc.returncode not in (0, 1):
        raise GitError(
            ["merge-base", "--is-ancestor", ancestor, descendant],
            proc.returncode,
            proc.stderr,
            repo,
        )
    return proc.returncode == 0


def build_candidate(
    repo: Path | str,
    base: str,
    branch: str,
    *,
    task_id: str,
    title: str,
    message: str | None = None,
    with_text: bool = True,
) -> CandidateResult:
    """Merge `branch` onto `base` (any commit-ish) without touching any worktree.

    Clean: `commit` is a new merge commit (parents base, branch tip; message "Merge task <id>:
    <title>") whose tree is what `git merge` would produce. Conflicted: `commit` is None and
    `conflicts` lists each file with its kinds and hunks. Always a true merge (never a
    fast-forward), so the target's first-parent history reads one merge per task.
    """
    base_oid = resolve_commit(repo, base)
    tip = resolve_commit(repo, branch)
    common = dict(base=base_oid, branch=short_branch(branch), branch_tip=tip, task_id=task_id)
    if is_ancestor(repo, tip, base_oid):
        tree = run_git(["rev-parse", f"{base_oid}^{{tree}}"], repo).stdout.strip()
        return CandidateResult(
            clean=True, commit=base_oid, tree=tree, already_merged=True, **common
        )
    result = merge_tree(repo, base_oid, tip, with_text=with_text)
    messages = [m.message for m in result.messages]
    if not result.clean:
        return CandidateResult(
            clean=False,
            commit=None,
            tree=result.tree,
            conflicts=result.conflicts,
            messages=messages,
            **common,
        )
    msg = message or merge_message(task_id, title, short_branch(branch))
    commit = run_git(
        ["commit-tree", result.tree, "-p", base_oid, "-p", tip, "-F", "-"],
        repo,
        input=msg if msg.endswith("\n") else msg + "\n",
        env=identity_env(repo),
    ).stdout.strip()
    return CandidateResult(clean=True, commit=commit, tree=result.tree, messages=messages, **common)


def build_stack(repo: Path | str, base: str, items: Sequence[StackItem]) -> StackResult:
    """Merge `items` one after another onto `base`, skipping (and reporting) those that conflict.

    The batch candidate is `commit`; bisecting a failed batch is building stacks of subsets.
    """
    base_oid = resolve_commit(repo, base)
    top = base_oid
    merged: list[CandidateResult] = []
    conflicted: list[CandidateResult] = []
    for item in items:
        res = build_candidate(repo, top, item.branch, task_id=item.task_id, title=item.title)
        if res.clean and res.commit:
            merged.append(res)
            top = res.commit
        else:
            conflicted.append(res)
    return StackResult(base=base_oid, commit=top, merged=merged, conflicted=conflicted)


# --- landing ---------------------------------------------------------------------------------


class LandingPlan(_Model):
    """What `plan_landing` checked before anything moves: `ref` goes from `old` to `new`, and
    these checkouts of it follow."""

    ref: str
    old: str
    new: str
    checkouts: list[Path] = Field(default_factory=list)


def plan_landing(
    repo: Path | str,
    ref: str,
    new: str,
    expected_old: str,
    *,
    update_checkouts: bool = True,
) -> LandingPlan:
    """The checks of `land` that change nothing: `ref` is at `expected_old`, `new` descends from
    it, and every worktree that has the branch checked out could follow (CheckoutDirty if not;
    see `blockers`). Raises as `land` does."""
    full_ref = full_branch_ref(ref)
    found = resolve_commits(repo, [expected_old, new, full_ref])  # one git call for all three
    old, new_oid, current = found[expected_old], found[new], found[full_ref]
    for rev, oid in ((expected_old, old), (new, new_oid)):
        if oid is None:
            raise RefNotFound(f"{rev!r} does not name a commit in {repo}")
    assert old is not None and new_oid is not None
    if current != old:
        raise TargetMoved(full_ref, old, current)
    if not is_ancestor(repo, old, new_oid):
        raise NotFastForward(f"{new_oid} does not descend from {full_ref} at {old}; not landed")
    checkouts: list[Path] = []
    if update_checkouts and full_ref.startswith("refs/heads/"):
        name = short_branch(full_ref)
        checkouts = [
            wt.path for wt in list_worktrees(repo) if wt.branch == name and wt.path.is_dir()
        ]
        for wt in checkouts:
            block = checkout_block(repo, wt, old, new_oid)
            if block is not None:
                raise CheckoutDirty(full_ref, wt, block.files, _why(block))
    return LandingPlan(ref=full_ref, old=old, new=new_oid, checkouts=checkouts)


def land(
    repo: Path | str,
    ref: str,
    new: str,
    expected_old: str,
    *,
    message: str | None = None,
    update_checkouts: bool = True,
) -> LandResult:
    """Move `ref` from `expected_old` to `new`, fast-forward only, compare-and-swap.

    Order matters: (1) every worktree that has the branch checked out must be able to follow
    (tracked changes, or untracked paths the new commit would overwrite or delete, including a
    file where it adds a directory, raise CheckoutDirty: not landed; see `blockers`);
    (2) the ref moves with `update-ref <ref> <new> <old>` (TargetMoved if anyone moved it);
    (3) each such checkout's index and files follow with `read-tree -u -m <old> <new>`. If (3)
    still fails because the user started editing in between, the ref is swapped back and
    CheckoutDirty is raised, so the checkout is never left stale. (1) is `plan_landing`, (2)
    and (3) `land_planned`: a caller may do other work between them.
    """
    plan = plan_landing(repo, ref, new, expected_old, update_checkouts=update_checkouts)
    return land_planned(repo, plan, message=message)


def land_planned(repo: Path | str, plan: LandingPlan, *, message: str | None = None) -> LandResult:
    """Steps (2) and (3) of `land` for what `plan_landing` checked: the compare-and-swap
    catches a target moved since, and a checkout that can no longer follow undoes it."""
    full_ref, old, new_oid = plan.ref, plan.old, plan.new
    reflog = message or f"stoneforge: land {new_oid[:12]}"
    proc = run_git(["update-ref", "-m", reflog, full_ref, new_oid, old], repo, check=False)
    if proc.returncode != 0:
        actual = ref_value(repo, full_ref)
        if actual != old:
            raise TargetMoved(full_ref, old, actual)
        raise GitError(["update-ref", full_ref, new_oid, old], proc.returncode, proc.stderr, repo)
    updated: list[Path] = []
    for wt in plan.checkouts:
        step = run_git(["read-tree", "-u", "-m", old, new_oid], wt, check=False)
        if step.returncode != 0:
            # The plan's status left the index fresh; a file touched since (saved unchanged)
            # looks modified to read-tree until the index is refreshed: once more after that.
            run_git(["update-index", "-q", "--refresh"], wt, check=False)
            step = run_git(["read-tree", "-u", "-m", old, new_oid], wt, check=False)
        if step.returncode != 0:
            undo = run_git(
                ["update-ref", "-m", "stoneforge: undo land", full_ref, old, new_oid],
                repo,
                check=False,
            )
            detail = "it changed while landing; " + (
                "the landing was undone"
                if undo.returncode == 0
                else f"the ref moved again and could not be put back: {undo.stderr.strip()}"
            )
            raise CheckoutDirty(full_ref, wt, dirty_files(wt, untracked=False), detail)
        updated.append(wt)
    return LandResult(ref=full_ref, old=old, new=new_oid, updated_worktrees=updated)


def _why(block: CheckoutBlock) -> str:
    if block.in_the_way and not block.changed:
        return "untracked files the landing would overwrite or delete"
    return block.detail


# --- rerere ----------------------------------------------------------------------------------


def enable_shared_rerere(repo: Path | str) -> None:
    """Turn on rerere (with autoupdate) in the repository config.

    The config and `rr-cache` live in the common git dir, so a resolution recorded in any
    worktree is replayed in every other one.
    """
    run_git(["config", "--local", "rerere.enabled", "true"], repo)
    run_git(["config", "--local", "rerere.autoupdate", "true"], repo)


def merge_in_worktree(
    worktree: Path | str,
    base: str,
    branch: str,
    *,
    task_id: str,
    title: str,
    message: str | None = None,
) -> WorktreeMergeResult:
    """Real `git merge --no-ff` of `branch` onto `base` (detached) in a steward worktree.

    Conflicts that rerere resolves from the shared cache are committed; otherwise the merge is
    left in progress with `conflicted` listing the paths for an agent to resolve (then
    `snapshot.commit_all` finishes the merge commit). The worktree must be clean: prepare it
    with `worktrees.checkout_detached`.
    """
    root = worktree_root(worktree)
    dirty = dirty_files(root)
    if dirty:
        raise WorktreeDirty(root, dirty)
    base_oid = resolve_commit(root, base)
    tip = resolve_commit(root, branch)
    run_git(["checkout", "--quiet", "--detach", base_oid], root)
    msg = message or merge_message(task_id, title, short_branch(branch))
    env = identity_env(root)
    proc = run_git(
        ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", msg.rstrip("\n"), tip],
        root,
        check=False,
        env=env,
    )
    if proc.returncode == 0:
        head = run_git(["rev-parse", "HEAD"], root).stdout.strip()
        return WorktreeMergeResult(commit=head, conflicted=[], resolved_by_rerere=[])
    if not _merge_in_progress(root):  # failed before merging anything: a real error
        raise GitError(["merge", tip], proc.returncode, proc.stderr, root, proc.stdout)
    unmerged = _unmerged(root)
    reported = _reported_conflicts(proc.stdout + proc.stderr)
    if unmerged:
        return WorktreeMergeResult(
            commit=None,
            conflicted=unmerged,
            resolved_by_rerere=sorted(set(reported) - set(unmerged)),
        )
    # Everything was resolved by rerere (autoupdate staged it): conclude the merge.
    run_git(["commit", "--quiet", "--no-edit", "--no-verify"], root, env=env)
    head = run_git(["rev-parse", "HEAD"], root).stdout.strip()
    return WorktreeMergeResult(commit=head, conflicted=[], resolved_by_rerere=sorted(reported))


def _unmerged(root: Path) -> list[str]:
    out = run_git(["diff", "--name-only", "-z", "--diff-filter=U"], root).stdout
    return sorted({p for p in out.split("\0") if p})


def _merge_in_progress(root: Path) -> bool:
    proc = run_git(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"], root, check=False)
    return proc.returncode == 0


def _reported_conflicts(stdout: str) -> list[str]:
    prefix = "Merge conflict in "
    paths = []
    for line in stdout.splitlines():
        if line.startswith("CONFLICT") and prefix in line:
            paths.append(line.split(prefix, 1)[1].strip())
    return sorted(set(paths))


def abort_merge(worktree: Path | str) -> None:
    """Abandon a merge left in progress by `merge_in_worktree`."""
    root = worktree_root(worktree)
    if _merge_in_progress(root):
        run_git(["merge", "--abort"], root)
