"""Stacked dependents at the start of each round: restacked when a blocker landed or changed,
sent back to waiting when a blocker failed for good; and the freshness rule the queue applies.

Runs before the queue is read, in the steward's own round, so a branch never moves while the
steward builds a candidate from it. Only idle dependents are rebuilt here (in review, their
merge request not being checked or waiting for approval); a dependent whose agent runs is told
(`on_dependent(task, "tell", text)`) and its worker restacks it once the session has ended;
one whose blocker failed for good is stopped (`"stop"`) and waits again, its work kept.
"""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.errors import InvalidTransitionError
from stoneforge.git.repo import run_git
from stoneforge.git.stacking import (
    RestackConflict,
    keep_work,
    reset_to_base,
    restack,
)
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import MergeStatus, Task, TaskStatus
from stoneforge.orchestrator.stacking import (
    StackPlan,
    describe,
    new_base,
    stack_plan,
    stale_blockers,
)
from stoneforge.orchestrator.steward.base import Entry, StewardBase

log = logging.getLogger("stoneforge.steward")

#: A dependent whose merge request is in one of these may be rebuilt by the steward now.
_IDLE_MR = (MergeStatus.REVIEWING, MergeStatus.PENDING)


class StackingMixin(StewardBase):
    """Restacks idle stacked dependents; holds stale ones out of the queue."""

    async def _restack_dependents(self) -> None:
        if not self.config.orchestrator.stacking:
            return
        actions = await to_thread.run_sync(self._restack_pass)
        for task_id, action, text in actions:
            self.on_dependent(task_id, action, text)

    def _restack_pass(self) -> list[tuple[str, str, str]]:
        """One look at every stacked dependent; what running workers must be told or stopped."""
        actions: list[tuple[str, str, str]] = []
        for task in self.store.stacked_tasks():
            plan = stack_plan(self.store, task)
            if plan.failed:
                why = f"its blocker {', '.join(plan.failed)} failed for good"
                if task.status == TaskStatus.IN_PROGRESS:
                    key = f"stop {task.id} {task.dispatches}"
                    if key not in self._said:
                        self._said.add(key)
                        actions.append((task.id, "stop", why))
                elif task.status == TaskStatus.REVIEW and _mr_idle(task):
                    self._back_to_waiting(task, why)
                continue
            if not plan.stackable or plan.heads == task.stack_heads:
                continue  # a blocker is being redone (its next head restacks us), or no change
            if task.status == TaskStatus.IN_PROGRESS:
                key = f"tell {task.id} {sorted(plan.heads.items())} {plan.landed}"
                if key not in self._said:
                    self._said.add(key)
                    actions.append((task.id, "tell", _base_moved_text(task, plan, self.target)))
                continue
            if task.status == TaskStatus.REVIEW and _mr_idle(task):
                self._restack_idle(task, plan)
        return actions

    def _restack_idle(self, task: Task, plan: StackPlan) -> None:
        """Rebuild an idle dependent's branch on its new base; its open MR follows the head."""
        assert task.branch is not None and task.merge_request is not None
        old_base = (
            task.stack_base
            or run_git(["merge-base", self.target, task.branch], self.root).stdout.strip()
        )
        try:
            base = new_base(self.root, self.target, plan)
            head = restack(
                self.root,
                task.worktree,
                task.branch,
                task.id,
                old_base=old_base,
                new_base=base,
            )
        except RestackConflict as exc:
            self._restack_conflict(task, plan, exc)
            return
        self.store.set_stack(task.id, plan.heads, base, head_commit=head, fence=self.fence)
        where = describe(plan.heads) if plan.heads else f"on {self.target}"
        self.note(f"{task.id} restacked {where} (head {head[:10]})")

    def _restack_conflict(self, task: Task, plan: StackPlan, exc: RestackConflict) -> None:
        """Its own commits do not apply on the new base: they are kept at a recovery ref, the
        branch starts again on the base, and a worker re-applies them (its MR is refused)."""
        assert task.branch is not None and task.merge_request is not None
        try:
            base = new_base(self.root, self.target, plan)
        except RestackConflict:  # the blockers conflict with each other: wait for them to land
            self._back_to_waiting(task, f"its blockers' branches conflict: {exc}")
            return
        saved = reset_to_base(self.root, task.worktree, task.branch, task.id, base)
        self.store.set_stack(task.id, plan.heads, base, fence=self.fence)
        files = f" ({', '.join(exc.files[:10])})" if exc.files else ""
        reason = f"its restack {describe(plan.heads)} conflicted{files}"
        self._reject(task.merge_request, reason)
        self._sent_back_to_worker(
            task,
            f"Your branch {task.branch} was restacked {describe(plan.heads)} after a blocker "
            f"landed or changed, and your commits did not apply on it{files}. They are kept at "
            f"{saved.ref}; re-apply them on {task.branch} (`git cherry-pick "
            f"{base[:12]}..{saved.ref}`, then resolve the conflicts).",
        )

    def _back_to_waiting(self, task: Task, why: str) -> None:
        """A dependent in review whose blocker failed for good: its MR is refused and it waits
        again (open, blocked), its work on its branch and at a recovery ref."""
        assert task.branch is not None and task.merge_request is not None
        saved = keep_work(self.root, task.worktree, task.branch, task.id)
        self._reject(task.merge_request, why)
        self._sent_back_to_worker(
            task,
            f"Not merged: {why}. Your work is on {task.branch} and kept at {saved.ref}; the task "
            "continues once the blocker is done.",
        )

    def _sent_back_to_worker(self, task: Task, note: str) -> None:
        """Back to `open` with the attempt given back: a blocker's fate is not the task's."""
        try:
            self.store.transition_task(
                task.id,
                TaskEvent.SEND_BACK,
                attempt=task.merge_request.attempt if task.merge_request else None,
                fence=self.fence,
                give_back_attempt=True,
                note=note,
            )
        except InvalidTransitionError as exc:
            log.info("%s not sent back: %s", task.id, exc)
            return
        self.note(f"{task.id} back to waiting: {note[:160]}")
        self.on_landed()  # the dispatcher looks again

    def _stale_stack(self, entry: Entry) -> list[str]:
        """The blockers whose work in ``entry``'s stacked branch is not theirs (any more): the
        MR must not land until it is restacked. Empty for a fresh or unstacked branch."""
        if not entry.task.stack_heads:
            return []
        return stale_blockers(self.store, entry.task)


def _mr_idle(task: Task) -> bool:
    """Its merge request is open and not being checked (nor checked and waiting for a person)."""
    mr = task.merge_request
    return mr is not None and mr.status in _IDLE_MR


def _base_moved_text(task: Task, plan: StackPlan, target: str) -> str:
    where = describe(plan.heads) if plan.heads else f"on {target}"
    moved = ", ".join([*plan.landed, *plan.heads]) or "its blockers"
    return (
        f"Note from Stoneforge: a blocker of your task ({moved}) landed or changed. Your branch "
        f"{task.branch} will be restacked {where} when this session ends (your commits go on "
        "top of it); keep working and commit as usual."
    )
