"""What the steward writes when a merge request does not land: requeued, rejected, failed its
checks, its branch gone; and the task sent back to a worker (or failed) with a note."""

from __future__ import annotations

import logging

from stoneforge.errors import InvalidTransitionError
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import CheckRun, MergeRequest
from stoneforge.orchestrator.checks import blocks
from stoneforge.orchestrator.steward.base import Entry, StewardBase

log = logging.getLogger("stoneforge.steward")


class OutcomesMixin(StewardBase):
    """Merge requests that do not land, and their tasks sent back."""

    def _requeue(self, entry: Entry, reason: str) -> None:
        self._transition_mr(entry.mr.id, MrEvent.REQUEUE, reason=reason)

    def _transition_mr(self, mr_id: str, event: MrEvent, **fields: object) -> bool:
        """A fenced MR transition; False (logged) when the MR moved on meanwhile."""
        try:
            self.store.transition_merge_request(mr_id, event, fence=self.fence, **fields)
        except InvalidTransitionError as exc:
            log.info("%s: %s", mr_id, exc)
            return False
        return True

    def _reject(self, mr: MergeRequest, reason: str) -> None:
        if self._transition_mr(mr.id, MrEvent.REJECT, reason=reason):
            self.note(f"{mr.id} dropped: {reason}")

    def _test_failed(self, entry: Entry, runs: list[CheckRun]) -> None:
        failing = next((r for r in runs if blocks(r)), runs[-1])  # not a quarantined one
        code = "timed out" if failing.exit_code is None else f"exit {failing.exit_code}"
        reason = f"check `{failing.command}` failed ({code}), also on a retry"
        if not self._transition_mr(entry.mr.id, MrEvent.FAIL_CHECKS, checks=runs, reason=reason):
            return
        self.note(f"{entry.mr.id} ({entry.task.id}) failed its checks: {reason}")
        note = (
            f"The merge queue checked the merge of your branch with {self.target} and "
            f"{reason}. Fix it on your branch. Output:\n{failing.output_tail[-2500:]}"
        )
        self._send_back(entry, note)

    def _send_back(self, entry: Entry, note: str, *, fail: bool = False) -> None:
        """Return the MR's task to a worker, or fail it when its attempts are used up.

        Only the attempt that made the MR is sent back: a task cancelled or re-dispatched since
        is left as it is.
        """
        task = self.store.get_task(entry.task.id)
        exhausted = fail or task.attempts >= self.config.orchestrator.maxAttempts
        event = TaskEvent.FAIL if exhausted else TaskEvent.SEND_BACK
        try:
            self.store.transition_task(
                task.id, event, attempt=entry.mr.attempt, fence=self.fence, note=note
            )
        except InvalidTransitionError as exc:  # cancelled meanwhile: leave it so
            log.info("%s not sent back: %s", task.id, exc)
            return
        self.on_landed()  # the dispatcher should look again

    def _branch_gone(self, entry: Entry) -> None:
        reason = f"its branch {entry.mr.branch} no longer exists"
        self._reject(entry.mr, reason)
        self._send_back(
            entry,
            f"Your merge request {entry.mr.id} could not be merged: {reason}. Redo the work "
            "on your branch.",
        )
