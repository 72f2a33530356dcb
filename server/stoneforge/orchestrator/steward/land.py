"""Landing: a checked candidate lands with a compare-and-swap of the target (or waits for a
person's approval); branches already on the target are recorded; a landing a crash
interrupted is recorded (or requeued) on the next round."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from anyio import from_thread, to_thread

from stoneforge.errors import InvalidTransitionError
from stoneforge.git.errors import CheckoutDirty, TargetMoved
from stoneforge.git.merge import is_ancestor
from stoneforge.git.remote import PushRefused
from stoneforge.lifecycle import MrEvent
from stoneforge.models import CheckRun, MergeStatus
from stoneforge.orchestrator.checks import Verdict
from stoneforge.orchestrator.landing import (
    land_merge_requests,
    record_merged,
    remove_merged_worktrees,
)
from stoneforge.orchestrator.steward.base import Entry, Outcome, StewardBase

log = logging.getLogger("stoneforge.steward")


class LandMixin(StewardBase):
    """Approval or the landing itself, and landings a crash interrupted."""

    def _recover_testing(self) -> None:
        """MRs left `testing` by a round that died (or an orchestrator that did) go back.

        Only the lease holder gets here (the writes are fenced), so an MR still `testing` is
        nobody's: the steward that was checking it is gone. If that steward died between moving
        the target and recording it, its candidate is on the target: it is recorded as merged
        with the checks it had passed (saved on the MR before landing).
        """
        for mr in self.store.list_merge_requests(MergeStatus.TESTING):
            if mr.candidate_commit and is_ancestor(
                self.root, mr.candidate_commit, self.landing_target.ref
            ):
                try:
                    with self.store.transaction(fence=self.fence):
                        record_merged(
                            self.store, [mr], commit=mr.candidate_commit, checks=mr.checks
                        )
                except InvalidTransitionError as exc:
                    log.warning("could not record the landing of %s: %s", mr.id, exc)
                    continue
                self.note(f"{mr.id} had landed at {mr.candidate_commit[:10]} before a crash")
                continue
            self._transition_mr(
                mr.id, MrEvent.REQUEUE, reason="its check was interrupted; checking it again"
            )

    async def _check_and_land(self, entries: list[Entry], base: str, commit: str) -> Outcome:
        """Check ``commit`` (built on ``base``) and land it, or hold it for approval."""
        if self._take(entries, commit) is not None:
            return "requeued"
        self._expect_landing(base, commit)
        verdict = await self._verify(commit, retry=len(entries) == 1, entries=entries)
        return await self._after_verdict(entries, base, commit, verdict)

    def _take(self, entries: Sequence[Entry], commit: str) -> Entry | None:
        """Move ``entries`` to `testing` with candidate ``commit``. If one cannot be (rejected,
        or sent to review, meanwhile), those already moved go back and that one is returned."""
        taken: list[Entry] = []
        for entry in entries:
            try:
                self.store.transition_merge_request(
                    entry.mr.id, MrEvent.CHECK, candidate_commit=commit, fence=self.fence
                )
            except InvalidTransitionError:  # rejected by a human meanwhile
                for other in taken:
                    self._requeue(other, f"{entry.mr.id} left the batch; rebuilding")
                return entry
            taken.append(entry)
        return None

    async def _after_verdict(
        self, entries: list[Entry], base: str, commit: str, verdict: Verdict
    ) -> Outcome:
        """What follows the checks of ``commit`` (built on ``base``): the failure recorded, a
        wait for approval, or the landing."""
        if not verdict.ok:
            if len(entries) == 1:
                self._test_failed(entries[0], verdict.runs)
            else:
                for entry in entries:
                    self._transition_mr(entry.mr.id, MrEvent.REQUEUE, checks=verdict.runs)
            return "failed"
        if verdict.flaky:
            self.note(
                f"{', '.join(e.mr.id for e in entries)}: `{verdict.flaky[0]}` failed once and "
                "passed on the retry (recorded as flaky)"
            )
        protected = self._protected_changes(entries[0]) if len(entries) == 1 else []
        if not self.config.agents.steward.autoMerge or protected:
            entry = entries[0]
            if self.store.get_merge_request(entry.mr.id).approved_at is None:
                why = (
                    f"it changes protected paths ({', '.join(protected[:5])}): a person approves "
                    "changes to the gate itself"
                    if protected
                    else None
                )
                self._transition_mr(
                    entry.mr.id, MrEvent.AWAIT_APPROVAL, checks=verdict.runs, reason=why
                )
                self.note(
                    f"{entry.mr.id} passed its checks and waits for approval"
                    + (f": {why}" if why else "")
                )
                return "awaiting"
        return await self._land(entries, base, commit, verdict.runs)

    async def _land(
        self, entries: list[Entry], base: str, commit: str, runs: list[CheckRun]
    ) -> Outcome:
        # The checks passed: keep them on the MRs, so a crash right after the ref moves is
        # recorded on restart with the right commit and its checks.
        for entry in entries:
            self.store.update_merge_request(entry.mr.id, checks=runs)
        mrs = [self.store.get_merge_request(e.mr.id) for e in entries]
        try:
            await to_thread.run_sync(
                lambda: land_merge_requests(
                    self.store,
                    self.root,
                    self.config,
                    self.landing_target,
                    mrs,
                    candidate=commit,
                    base=base,
                    checks=runs,
                    fence=self.fence,
                    message=f"stoneforge: land {', '.join(e.mr.id for e in entries)}",
                    on_recorded=lambda: from_thread.run_sync(self.on_landed),  # before clean-up
                )
            )
        except InvalidTransitionError as exc:  # cancelled or re-dispatched while it was checked
            for entry in entries:
                self._requeue(entry, f"not landed: {exc}")
            return "requeued"
        except TargetMoved as exc:
            for entry in entries:
                self._requeue(entry, f"the target moved while checking ({exc}); rebuilding")
            return "requeued"
        except CheckoutDirty as exc:
            for entry in entries:
                self._requeue(entry, str(exc))
            self._retry_in = self.dirty_retry_s
            self.note(f"not landing: {exc}")
            return "requeued"
        except PushRefused as exc:
            # Not the task's fault and not ours to retry: a person has to look (a hook, rights).
            reason = f"not landed: {exc}"
            for entry in entries:
                self._transition_mr(entry.mr.id, MrEvent.FAIL_CHECKS, reason=reason)
                self._send_back(
                    entry,
                    f"{reason}. The work is on branch {entry.mr.branch}; retry the task once "
                    "the remote accepts it.",
                    fail=True,
                )
            self.note(f"{', '.join(e.mr.id for e in entries)} {reason}")
            return "failed"
        self.note(f"landed {', '.join(e.mr.id for e in entries)} on {self.target} at {commit[:10]}")
        self.on_landed()
        return "landed"

    async def _already_on_target(self, entries: list[Entry]) -> None:
        """Branches that bring nothing new: merged only if the task's own commits are on the
        target; otherwise (an empty or rewound branch) the MR is refused and the task goes back."""
        tip = await self._tip()
        for entry in entries:
            head = entry.mr.head_commit
            on_target = head is not None and await to_thread.run_sync(
                lambda head=head: is_ancestor(self.root, head, self.landing_target.ref)
            )
            if not on_target:
                reason = (
                    f"its branch {entry.mr.branch} holds nothing that {self.target} lacks, and "
                    "the commits recorded for the task are not on it"
                )
                self._reject(entry.mr, reason)
                self._send_back(
                    entry,
                    f"Your merge request {entry.mr.id} was not merged: {reason}. Commit your "
                    f"work on {entry.mr.branch}.",
                )
                continue
            try:
                with self.store.transaction(fence=self.fence):
                    record_merged(self.store, [entry.mr], commit=tip, checks=[])
            except InvalidTransitionError as exc:
                log.info("%s not recorded as merged: %s", entry.mr.id, exc)
                continue
            await to_thread.run_sync(
                lambda entry=entry: remove_merged_worktrees(
                    self.store,
                    self.root,
                    self.config,
                    self.landing_target,
                    [entry.mr],
                    fence=self.fence,
                )
            )
            self.note(f"{entry.mr.id}: its commits were already on {self.target}")
        self.on_landed()
