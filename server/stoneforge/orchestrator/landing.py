"""What happens once a candidate commit has landed on the target: records and clean-up.

Shared by the steward (automatic landing) and the service (a human's `sf merge approve`), so a
merge reads the same in the store whoever landed it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from stoneforge.config import StoneforgeConfig
from stoneforge.git.snapshot import save_snapshot
from stoneforge.git.task_clone import is_task_clone, refresh_pool, remove_task_checkout
from stoneforge.models import CheckRun, MergeRequest, MergeStatus, TaskStatus, utcnow
from stoneforge.store import Store

log = logging.getLogger("stoneforge.landing")


def record_landed(
    store: Store,
    root: Path,
    config: StoneforgeConfig,
    target: str,
    landed: Sequence[tuple[MergeRequest, str]],
    checks: Sequence[CheckRun],
) -> None:
    """Mark merge requests and their tasks merged; remove worktrees and branches if configured."""
    now = utcnow()
    for mr, commit in landed:
        store.update_merge_request(
            mr.id,
            status=MergeStatus.MERGED,
            merged_commit=commit,
            merged_at=now,
            checks=list(checks),
        )
        store.update_task(mr.task_id, status=TaskStatus.MERGED, note=None, kind="task.merged")
        if config.merge.deleteMergedBranches:
            task = store.get_task(mr.task_id)
            if task.worktree:
                _remove(root, Path(task.worktree), task.id, target)
    worktree_dir = Path(config.orchestrator.worktreeDir)
    refresh_pool(root, worktree_dir if worktree_dir.is_absolute() else root / worktree_dir)


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
