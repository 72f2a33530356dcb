"""A person's decision on a merge request that waits for one: approve it, or reject it.

Both go through the checked transitions of the store; approving lands a still-valid candidate by
compare-and-swap, exactly like the steward does, and never lands one checked on another tip.
"""

from __future__ import annotations

from pathlib import Path

from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidInputError, InvalidTransitionError
from stoneforge.git.errors import CheckoutDirty, TargetMoved
from stoneforge.git.remote import PushRefused
from stoneforge.git.repo import run_git
from stoneforge.git.target import TargetBranch
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import MergeRequest, MergeStatus, TaskStatus, utcnow
from stoneforge.orchestrator.landing import land_merge_requests
from stoneforge.store import Store


def approve(
    store: Store, root: Path, config: StoneforgeConfig, target: TargetBranch, mr_id: str
) -> MergeRequest:
    """Land a checked merge request that waits for approval.

    One that waits because the steward's review did not approve it (its rounds used up, or
    no verdict) has no candidate yet: approving it sends it on to the checks, and it lands
    once they pass.

    If the target has not moved since its candidate was checked, the candidate lands now
    (compare-and-swap). Otherwise it is marked approved and goes back to the queue: the
    steward rebuilds it on the new tip, checks it again, and lands it without asking twice.
    """
    mr = store.get_merge_request(mr_id)
    if mr.status != MergeStatus.AWAITING_APPROVAL:
        raise InvalidTransitionError(
            f"merge request {mr_id} is {mr.status.value}; only one awaiting_approval can be "
            "approved"
        )
    task = store.get_task(mr.task_id)
    if task.status != TaskStatus.REVIEW or (
        mr.attempt is not None and mr.attempt != task.dispatches
    ):
        raise InvalidTransitionError(
            f"merge request {mr_id} was made by an earlier attempt of task {task.id}, which "
            f"is {task.status.value} now; it cannot be approved (reject it instead)"
        )
    tip = target.tip()
    candidate = mr.candidate_commit
    if candidate and run_git(["rev-parse", f"{candidate}^1"], root).stdout.strip() == tip:
        try:
            land_merge_requests(
                store,
                root,
                config,
                target,
                [mr],
                candidate=candidate,
                base=tip,
                checks=mr.checks,
                fence=None,  # a person's decision, not the orchestrator's
                message=f"stoneforge: land {mr.id} (approved)",
            )
        except (TargetMoved, CheckoutDirty, PushRefused) as exc:
            return store.transition_merge_request(
                mr.id,
                MrEvent.REQUEUE,
                approved_at=utcnow(),
                reason=f"approved; not landed yet: {exc}",
            )
        return store.update_merge_request(mr.id, approved_at=utcnow())
    why = (
        f"approved; {target.name} moved since the check, so it is rebuilt and checked again"
        if candidate
        else "approved without the steward's review; it goes on to its checks"
    )
    return store.transition_merge_request(mr.id, MrEvent.REQUEUE, approved_at=utcnow(), reason=why)


def reject(store: Store, mr_id: str, reason: str) -> MergeRequest:
    """Refuse a merge request; its task goes back to a worker with the reason."""
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("a rejection needs a reason (--reason) for the worker")
    with store.transaction():
        mr = store.transition_merge_request(mr_id, MrEvent.REJECT, reason=reason)
        task = store.get_task(mr.task_id)
        # Only the attempt that made this MR goes back; a task cancelled, failed or already
        # re-dispatched since stays as it is.
        if task.status == TaskStatus.REVIEW and mr.attempt in (None, task.dispatches):
            store.transition_task(
                mr.task_id,
                TaskEvent.SEND_BACK,
                attempt=mr.attempt,
                note=f"Your merge request {mr.id} was rejected by a reviewer: {reason}",
                kind="task.rejected",
            )
    return mr
