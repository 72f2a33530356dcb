"""Stacked branches in a worker run: where a new branch starts, and the task's own branch
restacked at the run's safe points (the attempt's start, between sessions, at completion).

A running agent's checkout is never changed under it: when a blocker lands or changes while the
agent works, it is told by a message into its session (`base_moved`), and the branch is
restacked once the session has ended (see `orchestrator/stacking.py`).
"""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.git.repo import run_git
from stoneforge.git.stacking import RestackConflict, reset_to_base, restack, stack_base
from stoneforge.orchestrator.stacking import StackPlan, describe, stack_plan
from stoneforge.orchestrator.worker_base import WorkerBase

log = logging.getLogger("stoneforge.worker")


class StackMixin(WorkerBase):
    """A worker run's stacked branch: its start point and its restacks."""

    def _stack_start(self) -> tuple[str | None, StackPlan | None]:
        """The commit a new branch of this task starts at (None: the target's tip), and the
        plan it follows: its blockers' heads while any is in review (`orchestrator.stacking`)."""
        if not self.config.orchestrator.stacking:
            return None, None
        plan = stack_plan(self.store, self.store.get_task(self.task.id))
        if not plan.heads or not plan.stackable:
            return None, plan
        base = stack_base(
            self.root, self.target, list(plan.heads.values()), on_target=bool(plan.landed)
        )
        return base, plan

    def _record_start(self, start: str | None, plan: StackPlan | None) -> None:
        """A new branch: record what it is stacked on (nothing, when it starts on the target)."""
        heads = plan.heads if plan is not None and start is not None else {}
        if heads or self.store.get_task(self.task.id).stack_heads:
            self.store.set_stack(self.task.id, heads, start, fence=self.fence)
        if heads:
            log.info("task %s starts %s at %s", self.task.id, describe(heads), (start or "")[:10])

    async def _restack_own(self) -> str | None:
        """Rebuild the branch on where it belongs now (no agent runs in the checkout); a note
        for the next session's prompt when it moved, else None."""
        if not self.config.orchestrator.stacking:
            return None
        return await to_thread.run_sync(self._restack_own_sync)

    def _restack_own_sync(self) -> str | None:
        task = self.store.get_task(self.task.id)
        plan = stack_plan(self.store, task)
        if not plan.stackable or plan.heads == task.stack_heads:
            return None  # a blocker is being redone (its new head restacks us), or nothing moved
        old_base = (
            task.stack_base
            or run_git(["merge-base", self.target, "HEAD"], self.worktree).stdout.strip()
        )
        new_base = stack_base(
            self.root, self.target, list(plan.heads.values()), on_target=bool(plan.landed)
        )
        where = describe(plan.heads) if plan.heads else f"on {self.target}"
        try:
            head = restack(
                self.root,
                self.worktree,
                self.branch,
                self.task.id,
                old_base=old_base,
                new_base=new_base,
            )
        except RestackConflict as exc:
            saved = reset_to_base(self.root, self.worktree, self.branch, self.task.id, new_base)
            self.store.set_stack(self.task.id, plan.heads, new_base, fence=self.fence)
            files = f" ({', '.join(exc.files[:10])})" if exc.files else ""
            return (
                f"Your branch {self.branch} was restacked {where}: your earlier commits did not "
                f"apply on it{files}. They are kept at {saved.ref}; re-apply them "
                f"(`git log {new_base[:12]}..{saved.ref}`, `git cherry-pick {new_base[:12]}.."
                f"{saved.ref}` and resolve the conflicts) before you go on."
            )
        self.store.set_stack(self.task.id, plan.heads, new_base, head_commit=head, fence=self.fence)
        log.info("task %s restacked %s (head %s)", self.task.id, where, head[:10])
        return (
            f"Your branch {self.branch} was restacked {where} (its blockers landed or changed); "
            "your own commits are on top of it. Look at `git log` before you go on."
        )

    async def base_moved(self, text: str) -> None:
        """A blocker landed or changed while the agent works: tell it (its branch is restacked
        after the session, never under it)."""
        if self.live is not None:
            try:
                await self.live.send(text)
            except Exception as exc:  # the session may be ending; the restack happens anyway
                log.info("task %s: could not tell the agent its base moved: %s", self.task.id, exc)
