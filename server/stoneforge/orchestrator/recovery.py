"""Start-up recovery: sessions a dead orchestrator left `running` are ended and their work saved.

The orchestrator holds the repository's lease when this runs, so any session still marked running
belongs to a process that is gone, unless its owner is alive (a director of a concurrent `sf plan
create`, or this very process: the language server runs directors and the orchestrator side by
side). An orphan's CLI may still be alive: it is found by its recorded pid and by its session's
CLAUDE_CONFIG_DIR (a CLI whose pid was not stored yet), and stopped. Its worktree's uncommitted
work goes to a recovery ref, and its task goes back to the queue with a note naming that ref and
its attempt given back: an orchestrator's crash is not the task's failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from stoneforge.agents import is_alive, kill_tree
from stoneforge.agents.env import default_config_dir
from stoneforge.errors import InvalidTransitionError
from stoneforge.git.task_clone import snapshot as snapshot_checkout
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import SessionStatus, TaskStatus, utcnow
from stoneforge.store import Fence, Store

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


def owner_alive(owner: int | None) -> bool:
    """Whether the process that started a session still runs here, so the session can too
    (a session marked running whose owner is gone waits for the next start's recovery)."""
    return bool(owner) and is_alive(owner) and (owner == os.getpid() or _same_host_owner(owner))


def processes_of_session(root: Path, session_id: str) -> list[int]:
    """Live processes whose CLAUDE_CONFIG_DIR is this session's own directory."""
    return processes_of_sessions(root, [session_id]).get(session_id, [])


def processes_of_sessions(root: Path, session_ids: Iterable[str]) -> dict[str, list[int]]:
    """Live processes of each of ``session_ids``, found by their CLAUDE_CONFIG_DIR (one scan)."""
    markers = {
        f"CLAUDE_CONFIG_DIR={default_config_dir(root, sid)}".encode(): sid for sid in session_ids
    }
    found: dict[str, list[int]] = {}
    if not markers:
        return found
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            for value in (entry / "environ").read_bytes().split(b"\0"):
                if value in markers:
                    found.setdefault(markers[value], []).append(int(entry.name))
    return found


def recover_orphans(store: Store, fence: Fence | None = None) -> list[str]:
    """End orphaned sessions, save their work, requeue their tasks; returns what was done."""
    done: list[str] = []
    root = store.path.parent.parent  # <repo>/.stoneforge/state.db
    for session, owner in store.orphaned_sessions():
        if owner_alive(owner):
            continue  # a live process owns it (say `sf plan create` running its director)
        store.verify_fence(fence)  # only the lease holder kills and requeues
        pids = {session.pid} if session.pid else set()
        pids |= set(processes_of_session(root, session.id))
        for pid in sorted(pids):
            if is_alive(pid) and _is_agent_cli(pid):
                kill_tree(pid)
                done.append(f"stopped orphaned agent process {pid} of session {session.id}")
        saved = ""
        task = store.get_task(session.task_id) if session.task_id else None
        if task is not None and task.worktree and Path(task.worktree).is_dir():
            snapshot = None
            with contextlib.suppress(Exception):
                # Work in a task clone is published into the repository as a recovery ref.
                snapshot = snapshot_checkout(root, task.worktree, task.id)
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
            _requeue(
                store,
                task.id,
                fence,
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
            )
    # A task marked in progress with no running session (the orchestrator died in between).
    running = {s.task_id for s in store.list_sessions(status=SessionStatus.RUNNING)}
    for task in store.list_tasks(status=TaskStatus.IN_PROGRESS):
        if task.id not in running:
            _requeue(store, task.id, fence, note=task.note)
            done.append(f"task {task.id} requeued")
    for line in done:
        log.info("recovery: %s", line)
    return done


def _requeue(store: Store, task_id: str, fence: Fence | None, *, note: str | None) -> None:
    """Back to the queue with its attempt given back; a task that moved on meanwhile is left."""
    try:
        store.transition_task(
            task_id,
            TaskEvent.REQUEUE,
            fence=fence,
            give_back_attempt=True,
            note=note,
            kind="task.recovered",
        )
    except InvalidTransitionError as exc:
        log.info("recovery: %s not requeued: %s", task_id, exc)
