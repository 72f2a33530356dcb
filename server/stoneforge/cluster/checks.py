"""`merge.checkOn: cluster`: a candidate's checks as a Ray task on a node with a check slot.

The head pushes the candidate commit to the remote (`refs/stoneforge/candidates/<commit>`); the
task fetches it into its node's clone, checks it out in a check checkout of its own (exactly as
committed: `git clean -ffdx`, as the steward's local one) and runs the same `run_checks`. Its runs
come back as the steward's would. A node lost while checking: Ray runs the task again on another
node; the steward stopping cancels it (its processes are killed with the task).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.cluster.connect import connect
from stoneforge.cluster.protocol import CHECK_SLOTS
from stoneforge.config import StoneforgeConfig
from stoneforge.git.node_sync import delete_remote_ref, node_repository, remote_url
from stoneforge.git.repo import run_git
from stoneforge.git.worktrees import checkout_detached
from stoneforge.models import CheckRun

CANDIDATE_PREFIX = "refs/stoneforge/candidates"
#: Runs of a check task lost with its node, before the candidate counts as failed.
_RETRIES_ON_NODE_LOSS = 2


def check_on_node(
    url: str,
    ref: str,
    commit: str,
    commands: Sequence[str],
    timeout_s: float,
    quarantine: Sequence[str],
    marker: str,
) -> list[CheckRun]:
    """On a node: the candidate in this worker's check checkout, the checks run in it."""
    from stoneforge.cluster.node import node_dir
    from stoneforge.orchestrator.checks import run_checks

    base = node_repository(node_dir(), url)
    run_git(["fetch", "--quiet", "--no-tags", "--", url, f"+{ref}:{ref}"], base)
    # One check checkout per worker process: a worker runs one task at a time.
    path = base.parent.parent / "checks" / base.stem / f"w{os.getpid()}"
    checkout_detached(base, path, commit)
    return asyncio.run(run_checks(commands, path, timeout_s, quarantine=quarantine, marker=marker))


async def run_checks_on_cluster(
    root: Path, config: StoneforgeConfig, commit: str, commands: Sequence[str], marker: str
) -> list[CheckRun]:
    """Run ``commands`` on ``commit`` on a node with a free check slot; their runs."""
    remote = config.merge.remote
    if not remote:
        raise ValueError("merge.checkOn: cluster needs merge.remote")
    ray = connect(config.ray.address)
    url = await to_thread.run_sync(lambda: remote_url(root, remote))
    ref = f"{CANDIDATE_PREFIX}/{commit}"
    await to_thread.run_sync(
        lambda: run_git(["push", "--quiet", "--force", "--", url, f"{commit}:{ref}"], root)
    )
    task = ray.remote(check_on_node).options(
        num_cpus=0, resources={CHECK_SLOTS: 1}, max_retries=_RETRIES_ON_NODE_LOSS
    )
    pending = task.remote(
        url,
        ref,
        commit,
        list(commands),
        config.merge.checkTimeoutS,
        list(config.merge.quarantine),
        marker,
    )
    try:
        return await pending
    except BaseException:  # stopped or cancelled: the node must not go on checking
        with contextlib.suppress(Exception):
            ray.cancel(pending, force=True)
        raise
    finally:
        with anyio.CancelScope(shield=True):  # the candidate ref goes, even when cancelled
            await to_thread.run_sync(lambda: delete_remote_ref(root, url, ref))
