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
from collections.abc import Sequence
from pathlib import Path

from stoneforge.config import StoneforgeConfig
from stoneforge.git.remote import delete_remote_branch
from stoneforge.git.snapshot import save_snapshot
from stoneforge.git.target import TargetBranch
from stoneforge.git.task_clone import is_task_clone, refresh_pool, remove_task_checkout
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
) -> None:
    """Land ``candidate`` (checked, first parent ``base``) for ``mrs``, or raise and change nothing.

    Raises :class:`~stoneforge.errors.InvalidTransitionError` (a merge request or task is no
    longer landable, a stale attempt, the lease is lost), or the git layer's ``TargetMoved`` /
    ``CheckoutDirty`` / ``PushRefused``; in every case the target and the store are as they were.
    """
    with store.transaction(fence=fence):
        record_merged(store, mrs, commit=candidate, checks=checks)
        target.move(candidate, base, message=message)
    remove_merged_worktrees(store, root, config, target, mrs, fence=fence)


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
    worktree_dir = Path(config.orchestrator.worktreeDir)
    # Pool clones are kept at the target's tip: after a landing they are brought up to it.
    refresh_pool(root, worktree_dir if worktree_dir.is_absolute() else root / worktree_dir)
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
