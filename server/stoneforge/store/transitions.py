"""State writes: every change of a task's or merge request's status is a checked transition.

Each write reads the row, asks :mod:`stoneforge.lifecycle` where the event leads from its current
status, checks the attempt it is made for and the lease's fence, and writes, all in one
``BEGIN IMMEDIATE`` transaction: a compare-and-set that a concurrent cancel, a newer attempt or a
new lease holder makes fail instead of being overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stoneforge.errors import InvalidInputError, StaleAttemptError
from stoneforge.lifecycle import (
    TASK_EVENT_KINDS,
    MrEvent,
    TaskEvent,
    next_mr_status,
    next_task_status,
)
from stoneforge.models import CheckRun, MergeRequest, MergeStatus, Task, TaskStatus
from stoneforge.store.lease import Fence, Lease
from stoneforge.store.merge_requests import MergeRequestRows
from stoneforge.store.tasks import TaskRows

#: Task columns a transition may set besides its status.
_TASK_FIELDS = {"note", "branch", "worktree", "budget_usd", "budget_tokens"}


class Transitions(TaskRows, MergeRequestRows, Lease):
    @contextmanager
    def transaction(self, *, fence: Fence | None = None) -> Iterator[None]:
        """One write transaction around several store calls (they join it), fenced if given.

        Anything raised inside rolls all of it back. Keep it short: it holds the database's
        write lock (which is also what makes a fenced git side effect inside it safe: no other
        process can take the lease over until it ends).
        """
        with self._write() as db:
            self._check_fence(db, fence)
            yield

    def transition_task(
        self,
        task_id: str,
        event: TaskEvent,
        *,
        attempt: int | None = None,
        fence: Fence | None = None,
        kind: str | None = None,
        give_back_attempt: bool = False,
        **fields: Any,
    ) -> Task:
        """Move ``task_id`` by ``event``; raise if the table, the attempt or the fence says no.

        ``attempt``: the write is for that attempt (the task's ``dispatches`` when it was made);
        ``give_back_attempt``: the attempt ended through no fault of the task's (a shutdown, an
        orchestrator crash), so it does not count against ``maxAttempts``. A `wait_provider`
        (the provider failed the session) always gives it back.
        """
        if not set(fields) <= _TASK_FIELDS:
            raise InvalidInputError(f"a transition cannot set {sorted(set(fields) - _TASK_FIELDS)}")
        with self._write() as db:
            self._check_fence(db, fence)
            row = self._require(db, "tasks", task_id, "status, attempts, dispatches")
            current = TaskStatus(row["status"])
            if attempt is not None and row["dispatches"] != attempt:
                raise StaleAttemptError(
                    f"task {task_id} is on attempt {row['dispatches']} ({current.value}); this "
                    f"write was for attempt {attempt}, which was cancelled or replaced"
                )
            to = next_task_status(task_id, current, event)
            values: dict[str, Any] = {"status": to.value, **fields}
            if event == TaskEvent.DISPATCH:
                values["attempts"] = row["attempts"] + 1
                values["dispatches"] = row["dispatches"] + 1
            elif event == TaskEvent.RETRY:
                values["attempts"] = 0
            elif give_back_attempt or event == TaskEvent.WAIT_PROVIDER:
                values["attempts"] = max(row["attempts"] - 1, 0)
            self._set_task_columns(
                db,
                task_id,
                values,
                kind or TASK_EVENT_KINDS[event],
                {"from": current.value, "event": event.value},
            )
        return self.get_task(task_id)

    def dispatch_task(self, task_id: str, *, fence: Fence | None = None) -> Task:
        """Open -> in progress: a new attempt (``attempts`` and ``dispatches`` go up)."""
        return self.transition_task(task_id, TaskEvent.DISPATCH, fence=fence)

    def complete_task(
        self,
        task_id: str,
        *,
        attempt: int,
        branch: str,
        head_commit: str,
        summary: str,
        fence: Fence | None = None,
        review: bool = False,
    ) -> MergeRequest:
        """The attempt's work is done: its merge request and the move to review, together.

        With ``review`` the merge request starts `reviewing` (the steward reviews it before its
        checks); otherwise `pending`.
        """
        with self._write():
            task = self.transition_task(
                task_id, TaskEvent.COMPLETE, attempt=attempt, fence=fence, note=None, branch=branch
            )
            return self.create_merge_request(
                task_id,
                branch,
                summary,
                attempt=attempt,
                head_commit=head_commit,
                review=review,
                stacked_on=task.stacked_on,
                base_commit=task.stack_base,
            )

    def cancel_task(self, task_id: str) -> Task:
        return self.transition_task(task_id, TaskEvent.CANCEL)

    def retry_task(self, task_id: str) -> Task:
        return self.transition_task(task_id, TaskEvent.RETRY)

    def transition_merge_request(
        self,
        mr_id: str,
        event: MrEvent,
        *,
        fence: Fence | None = None,
        checks: Sequence[CheckRun] | None = None,
        **fields: Any,
    ) -> MergeRequest:
        """Move ``mr_id`` by ``event`` (and set ``fields``); raise if the table or fence says no."""
        with self._write() as db:
            self._check_fence(db, fence)
            row = self._require(db, "merge_requests", mr_id, "status")
            current = MergeStatus(row["status"])
            to = next_mr_status(mr_id, current, event)
            self._set_mr_columns(
                db, mr_id, fields, checks, {"from": current.value, "event": event.value}, to
            )
        return self.get_merge_request(mr_id)

    def set_stack(
        self,
        task_id: str,
        heads: dict[str, str],
        base: str | None,
        *,
        head_commit: str | None = None,
        fence: Fence | None = None,
    ) -> Task:
        """Record what the task's branch is stacked on (blocker -> head; none: on the target)
        and, when the branch was rebuilt while its merge request is open, the MR's new head and
        base, in one transaction (the queue reads them together)."""
        with self._write() as db:
            self._check_fence(db, fence)
            row = self._require(db, "tasks", task_id, "status")
            stacked = json.dumps(heads) if heads else None
            self._set_task_columns(
                db,
                task_id,
                {"stacked_on": stacked, "stack_base": base if heads else None},
                "task.restacked",
                {"from": row["status"], "headCommit": head_commit},
            )
            mr = db.execute(
                "SELECT id FROM merge_requests WHERE task_id = ? AND status IN (?, ?, ?, ?) "
                "ORDER BY seq DESC LIMIT 1",
                (
                    task_id,
                    MergeStatus.REVIEWING.value,
                    MergeStatus.PENDING.value,
                    MergeStatus.TESTING.value,
                    MergeStatus.AWAITING_APPROVAL.value,
                ),
            ).fetchone()
            if mr is not None and head_commit is not None:
                db.execute(
                    "UPDATE merge_requests SET head_commit = ?, stacked_on = ?, base_commit = ? "
                    "WHERE id = ?",
                    (head_commit, json.dumps(list(heads)), base if heads else None, mr["id"]),
                )
                self._event(
                    db, "mr.updated", "merge_request", mr["id"], {"headCommit": head_commit}
                )
        return self.get_task(task_id)
