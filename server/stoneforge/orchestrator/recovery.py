"""Start-up recovery: sessions a dead orchestrator left `running` are ended and their work saved.

The orchestrator holds the repository's lease when this runs, so any session still marked running
belongs to a process that is gone. Its CLI may still be alive (an orphan): it is stopped. Its
worktree's uncommitted work goes to a recovery ref, and its task goes back to the queue with a
note naming that ref.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from stoneforge.agents import is_alive, kill_tree
from stoneforge.git.snapshot import save_snapshot
from stoneforge.git.task_clone import snapshot as snapshot_checkout
from stoneforge.models import SessionStatus, TaskStatus, utcnow
from stoneforge.store import Store

log = logging.getLogger("stoneforge.recovery")


def _is_agent_cli(pid: int) -> bool:
    """Guard against pid reuse: only kill what looks like a Claude Code CLI."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc: trust the recorded pid
    return "claude" in cmdline


def _same_host_owner(pid: int) -> bool:
    """Whether ``pid`` is a stoneforge process here (not an unrelated one that reused the pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc: trust liveness
    return "stoneforge" in cmdline or " sf " in f" {cmdline} " or "/sf " in cmdline


def recover_orphans(store: Store, root: Path | None = None) -> list[str]:
    """End orphaned sessions, save their work, requeue their tasks; returns what was done.

    With the repository's `root`, work saved in a task clone is published into the repository.
    """
    done: list[str] = []
    for session, owner in store.orphaned_sessions():
        if owner and owner != os.getpid() and is_alive(owner) and _same_host_owner(owner):
            continue  # a live process owns it (say `sf plan create` running its director)
        if session.pid and is_alive(session.pid) and _is_agent_cli(session.pid):
            kill_tree(session.pid)
            done.append(f"stopped orphaned agent process {session.pid} of session {session.id}")
        saved = ""
        task = store.get_task(session.task_id) if session.task_id else None
        if task is not None and task.worktree and Path(task.worktree).is_dir():
            snapshot = None
            with contextlib.suppress(Exception):
                snapshot = (
                    snapshot_checkout(root, task.worktree, task.id)
                    if root is not None
                    else save_snapshot(task.worktree, task.id, restore=True)
                )
            if snapshot is not None:
                saved = f"; its uncommitted work is saved at {snapshot.ref}"
        who = f"pid {owner}" if owner else "a previous process"
        store.update_session(
            session.id,
            status=SessionStatus.CRASHED,
            ended_at=utcnow(),
            error=f"the orchestrator ({who}) died while this session ran{saved}",
        )
        done.append(f"session {session.id} marked crashed{saved}")
        if task is not None and task.status == TaskStatus.IN_PROGRESS:
            store.update_task(
                task.id,
                status=TaskStatus.OPEN,
                note=(
                    f"The previous orchestrator died during session {session.id}{saved}. "
                    "Committed work on the branch is intact; continue from it."
                    + (
                        f" Bring back the uncommitted work with `git checkout "
                        f"{saved.rsplit(' ', 1)[-1]} -- <paths>` if it is useful."
                        if saved
                        else ""
                    )
                ),
                kind="task.recovered",
            )
    # A task marked in progress with no running session (the orchestrator died in between).
    running = {s.task_id for s in store.list_sessions(status=SessionStatus.RUNNING)}
    for task in store.list_tasks(status=TaskStatus.IN_PROGRESS):
        if task.id not in running:
            store.update_task(
                task.id,
                status=TaskStatus.OPEN,
                attempts=max(task.attempts - 1, 0),
                kind="task.recovered",
            )
            done.append(f"task {task.id} requeued")
    for line in done:
        log.info("recovery: %s", line)
    return done
