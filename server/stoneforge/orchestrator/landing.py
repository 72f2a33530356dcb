"""The one landing path: re-validate, move the target, record, clean up.

Used by the steward (automatic landing) and the service (a human's `sf merge approve`), so a merge
is checked and recorded the same way whoever lands it. The state checks, the compare-and-swap of
the target ref and the records happen inside one store transaction that also proves the lease
(the fence): a process that lost the lease, a task cancelled or re-dispatched since its merge
request was made, or a merge request no longer in a landable state fails before the ref moves,
and a ref that fails to move (target moved, dirty checkout) records nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from stoneforge.background import in_background
from stoneforge.config import StoneforgeConfig
from stoneforge.git.clone_pool import refresh_pool
from stoneforge.git.remote import delete_remote_branch
from stoneforge.git.snapshot import save_snapshot
from stoneforge.git.target import TargetBranch
from stoneforge.git.task_clone import is_task_clone, remove_task_checkout
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import CheckRun, MergeRequest, utcnow
from stoneforge.store import Fence, Store

log = logging.getLogger("stoneforge.landing")


def land_merge_requests(
    store: Store,
    root: Path,
    config: StoneforgeConfig,
    target: TargetBranch,
    mrs: Sequence[MergeRequest],
    *,
    candidate: str,
    base: str,
    checks: Sequence[CheckRun],
    fence: Fence | None,
    message: str,
    on_recorded: Callable[[], None] = lambda: None,
) -> None:
    """Land ``candidate`` (checked, first parent ``base``) for ``mrs``, or raise and change nothing.

    ``on_recorded`` is called once the target moved and the merge is recorded, before the
    clean-up (removing a checkout of a large repository takes a while): dependents may be
    dispatched from then on.

    Raises :class:`~stoneforge.errors.InvalidTransitionError` (a merge request or task is no
    longer landable, a stale attempt, the lease is lost), or the git layer's ``TargetMoved`` /
    ``CheckoutDirty`` / ``PushRefused``; in every case the target and the store are as they were.
    """
    with store.transaction(fence=fence):
        # git's read-only checks first (a dozen git calls with a checkout of the target): from
        # the record on, the dependents wait only for the ref to move and the checkout to follow.
        planned = target.plan_move(candidate, base)
        record_merged(store, mrs, commit=candidate, checks=checks)
        target.move(candidate, base, message=message, planned=planned)
    try:
        on_recorded()
    except Exception:  # it landed: a failed wake-up must not skip the clean-up
        log.exception("could not tell that %s landed", ", ".join(mr.id for mr in mrs))
    # Pool clones are kept at the target's tip: brought up to it from now, beside the clean-up
    # (the dependents just woken take the clones prepared at the candidate, which is the tip).
    refresh_pool(root, config.orchestrator.worktree_dir(root))
    # At a lower priority: the dependents just woken are dispatched meanwhile.
    in_background(
        lambda: remove_merged_worktrees(store, root, config, target, mrs, fence=fence),
        "stoneforge-landing-cleanup",
    )


def record_merged(
    store: Store, mrs: Sequence[MergeRequest], *, commit: str, checks: Sequence[CheckRun]
) -> None:
    """Mark ``mrs`` and their tasks merged at ``commit`` (each transition checked)."""
    now = utcnow()
    with store.transaction():
        for mr in mrs:
            store.transition_merge_request(
                mr.id, MrEvent.LAND, merged_commit=commit, merged_at=now, checks=list(checks)
            )
            store.transition_task(mr.task_id, TaskEvent.LAND, attempt=mr.attempt, note=None)


def remove_merged_worktrees(
    store: Store,
    root: Path,
    config: StoneforgeConfig,
    target: TargetBranch,
    mrs: Sequence[MergeRequest],
    *,
    fence: Fence | None,
) -> None:
    """Remove the merged tasks' worktrees and branches (``deleteMergedBranches``), if we may.

    With ``pushBranches`` (or the Ray backend, whose nodes push it), the branch goes from the
    remote too.
    """
    if not config.merge.deleteMergedBranches:
        return
    for mr in mrs:
        store.verify_fence(fence)  # a process that lost the lease removes nothing
        task = store.get_task(mr.task_id)
        if task.worktree:
            _remove(root, Path(task.worktree), task.id, target.ref)
        pushed = config.merge.pushBranches or config.orchestrator.backend == "ray"
        if target.remote and pushed:
            delete_remote_branch(root, target.remote, mr.branch)


def _remove(root: Path, worktree: Path, task_id: str, target: str) -> None:
    # The branch is merged, so nothing committed is lost; anything uncommitted is kept in a
    # recovery ref before the directory goes.
    with contextlib.suppress(Exception):
        if worktree.is_dir() and not is_task_clone(worktree):
            save_snapshot(worktree, task_id, restore=False)
    try:
        remove_task_checkout(root, worktree, task_id, target=target)  # snapshots a clone itself
    except Exception:
        log.exception("could not remove worktree %s", worktree)
