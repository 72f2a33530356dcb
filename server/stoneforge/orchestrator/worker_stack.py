"""Stacked branches in a worker run: where a new branch starts, and the task's own branch
restacked at the run's safe points (the attempt's start, between sessions, at completion).

A running agent's checkout is never changed under it: when a blocker lands or changes while the
agent works, it is told by a message into its session (`base_moved`), and the branch is
restacked once the session has ended (see `orchestrator/stacking.py`).
"""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.models import TaskStatus
from stoneforge.orchestrator.stacking import (
    StackPlan,
    describe,
    record_start,
    restack_own,
    stack_plan,
    start_point,
)
from stoneforge.orchestrator.worker_base import RunResult, WorkerBase

log = logging.getLogger("stoneforge.worker")


class StackMixin(WorkerBase):
    """A worker run's stacked branch: its start point and its restacks."""

    def _stack_start(self) -> tuple[str | None, StackPlan | None]:
        """The commit a new branch of this task starts at (None: the target's tip), and the
        plan it follows: its blockers' heads while any is in review (`orchestrator.stacking`)."""
        if not self.config.orchestrator.stacking:
            return None, None
        return start_point(self.store, self.root, self.target, self.task.id)

    def _record_start(self, start: str | None, plan: StackPlan | None) -> None:
        if plan is not None:
            record_start(self.store, self.task.id, start, plan, self.fence)
            if start is not None:
                log.info("task %s starts %s", self.task.id, describe(plan.heads))

    async def _restack_own(self) -> str | None:
        """Rebuild the branch on where it belongs now (no agent runs in the checkout); a note
        for the next session's prompt when it moved, else None."""
        if not self.config.orchestrator.stacking:
            return None
        return await to_thread.run_sync(
            lambda: restack_own(
                self.store,
                self.root,
                self.target,
                self.task.id,
                self.worktree,
                self.branch,
                self.fence,
            )
        )

    def _unstackable(self, why: str) -> RunResult:
        """The blockers' heads conflict with one another: no base to stack on until one of them
        lands (the steward resolves that). Back to the queue, the attempt given back; the
        dispatcher holds it until its blockers' heads change (`RunResult.stack_conflict`)."""
        heads = stack_plan(self.store, self.store.get_task(self.task.id)).heads
        refused = self._requeue_without_cost(
            f"Not started: {why}; it starts once one of them has landed."
        )
        if refused is not None:
            return RunResult(self.task.id, TaskStatus.CANCELLED, refused)
        self.slot.state = "waiting for its blockers"
        return RunResult(self.task.id, TaskStatus.OPEN, why, stack_conflict=heads)

    async def base_moved(self, text: str) -> None:
        """A blocker landed or changed while the agent works: tell it (its branch is restacked
        after the session, never under it)."""
        if self.live is not None:
            try:
                await self.live.send(text)
            except Exception as exc:  # the session may be ending; the restack happens anyway
                log.info("task %s: could not tell the agent its base moved: %s", self.task.id, exc)
