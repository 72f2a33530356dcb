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

from stoneforge.models import MergeStatus, Task, TaskStatus
from stoneforge.store import Store

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
