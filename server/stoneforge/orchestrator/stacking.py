"""Stacked branches (`orchestrator.stacking`): what a dependent task's branch should be built on.

A task whose blockers are all merged or in review may start before they land, on a branch
stacked on the blockers' heads (their merge requests' recorded heads). The store keeps, per task,
which blocker heads its branch was built on (`Task.stack_heads`) and where its own work starts
(`Task.stack_base`); each merge request records the same, so its diff is its own work.

Invariants (the stateful property test checks them against the real steward):
- A stacked branch holds exactly its recorded blocker heads and its own commits on top.
- A stacked merge request may land only while it is *fresh*: every blocker it is stacked on is
  in review or merged with exactly the head recorded for it (`stale_blockers`). So a blocker's
  replaced work (a new attempt, a cancelled one) never lands through a dependent.
- A dependent lands only after (or in the same batch as, after) its blockers: the queue's rule.
- When a blocker fails for good (failed, cancelled, over budget), the dependent goes back to
  waiting (open, blocked) with its work kept on a recovery ref and on its branch.

Who restacks: the steward, at the start of each round, for idle dependents (in review, their
merge request not being checked); the worker, for its own task at the start of an attempt,
between sessions and at completion (never under a running agent, which is only told by a
message into its session that its base moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stoneforge.git.repo import run_git
from stoneforge.git.stacking import RestackConflict, reset_to_base, restack, stack_base
from stoneforge.models import MergeStatus, Task, TaskStatus
from stoneforge.store import Fence, Store

#: A blocker in one of these states will not come back by itself: its dependents wait.
FAILED_FOR_GOOD = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BUDGET_EXCEEDED)
#: A blocker's merge request in one of these is its queued, unlanded work.
OPEN_MR = (
    MergeStatus.REVIEWING,
    MergeStatus.PENDING,
    MergeStatus.TESTING,
    MergeStatus.AWAITING_APPROVAL,
)


@dataclass(frozen=True)
class StackPlan:
    """Where a task's branch belongs now, from its blockers' states."""

    #: Blockers in review -> their merge request's head: what the branch is stacked on.
    heads: dict[str, str] = field(default_factory=dict)
    #: Blockers merged: their work is on the target, which joins the base.
    landed: list[str] = field(default_factory=list)
    #: Blockers being redone (sent back, in progress, open): no head to stack on right now.
    waiting: list[str] = field(default_factory=list)
    #: Blockers failed for good: the dependent goes back to waiting.
    failed: list[str] = field(default_factory=list)

    @property
    def stackable(self) -> bool:
        return not self.waiting and not self.failed


def blocker_head(blocker: Task) -> str | None:
    """The head a dependent stacks on: the blocker's open merge request's recorded head."""
    mr = blocker.merge_request
    if blocker.status != TaskStatus.REVIEW or mr is None or mr.status not in OPEN_MR:
        return None
    return mr.head_commit


def stack_plan(store: Store, task: Task) -> StackPlan:
    heads: dict[str, str] = {}
    landed: list[str] = []
    waiting: list[str] = []
    failed: list[str] = []
    for dep in task.depends_on:
        blocker = store.get_task(dep)
        if blocker.status == TaskStatus.MERGED:
            landed.append(dep)
        elif blocker.status in FAILED_FOR_GOOD:
            failed.append(dep)
        elif (head := blocker_head(blocker)) is not None:
            heads[dep] = head
        else:
            waiting.append(dep)
    return StackPlan(heads=heads, landed=landed, waiting=waiting, failed=failed)


def stale_blockers(store: Store, task: Task) -> list[str]:
    """Blockers whose work in the task's stacked branch is not theirs any more: the blocker is
    not in review or merged with exactly the recorded head. Empty: the stack is fresh."""
    stale = []
    for dep, head in task.stack_heads.items():
        blocker = store.get_task(dep)
        mr = blocker.merge_request
        fresh = (
            mr is not None
            and mr.head_commit == head
            and (
                (blocker.status == TaskStatus.MERGED and mr.status == MergeStatus.MERGED)
                or (blocker.status == TaskStatus.REVIEW and mr.status in OPEN_MR)
            )
        )
        if not fresh:
            stale.append(dep)
    return stale


def describe(heads: dict[str, str]) -> str:
    """ "stacked on t1, t2" or "on the target"."""
    return f"stacked on {', '.join(heads)}" if heads else "on the target"


def new_base(root: Path, target: str, plan: StackPlan) -> str:
    """The commit ``plan`` puts a branch's own work on (RestackConflict: the heads conflict)."""
    return stack_base(root, target, list(plan.heads.values()), on_target=bool(plan.landed))


def start_point(
    store: Store, root: Path, target: str, task_id: str
) -> tuple[str | None, StackPlan]:
    """Where a new branch of ``task_id`` starts: its blockers' heads while any is in review
    (None: the target's tip), and the plan that says so."""
    plan = stack_plan(store, store.get_task(task_id))
    if not plan.heads or not plan.stackable:
        return None, plan
    return new_base(root, target, plan), plan


def record_start(
    store: Store, task_id: str, start: str | None, plan: StackPlan, fence: Fence | None
) -> None:
    """A new branch: record what it is stacked on (nothing, when it starts on the target)."""
    heads = plan.heads if start is not None else {}
    if heads or store.get_task(task_id).stack_heads:
        store.set_stack(task_id, heads, start, fence=fence)


def restack_own(
    store: Store,
    root: Path,
    target: str,
    task_id: str,
    clone: Path | None,
    branch: str,
    fence: Fence | None,
) -> str | None:
    """The worker's restack of its own task, where no agent runs: the branch rebuilt on where
    its blockers put it now; a note for the next session when it moved, else None. Commits that
    do not apply are kept at a recovery ref and the branch starts again on the new base."""
    task = store.get_task(task_id)
    plan = stack_plan(store, task)
    if not plan.stackable or plan.heads == task.stack_heads:
        return None  # a blocker is being redone (its new head restacks us), or nothing moved
    where = describe(plan.heads) if plan.heads else f"on {target}"
    head_now = run_git(["rev-parse", f"refs/heads/{branch}"], root).stdout.strip()
    old_base = task.stack_base or run_git(["merge-base", target, head_now], root).stdout.strip()
    base = new_base(root, target, plan)
    try:
        head = restack(root, clone, branch, task_id, old_base=old_base, new_base=base)
    except RestackConflict as exc:
        saved = reset_to_base(root, clone, branch, task_id, base)
        store.set_stack(task_id, plan.heads, base, fence=fence)
        files = f" ({', '.join(exc.files[:10])})" if exc.files else ""
        return (
            f"Your branch {branch} was restacked {where}: your earlier commits did not apply on "
            f"it{files}. They are kept at {saved.ref}; re-apply them (`git log {base[:12]}.."
            f"{saved.ref}`, `git cherry-pick {base[:12]}..{saved.ref}` and resolve the "
            "conflicts) before you go on."
        )
    store.set_stack(task_id, plan.heads, base, head_commit=head, fence=fence)
    return (
        f"Your branch {branch} was restacked {where} (its blockers landed or changed); your "
        "own commits are on top of it. Look at `git log` before you go on."
    )
