"""What the parts of a worker run share: its slot and result, the handoff bookkeeping of a
session, and the state and small helpers every part of `WorkerRun` reads (its parts are mixins
on `WorkerBase`, composed in `worker.WorkerRun`; they call one another through ``self``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    AgentSession,
    HandoffNote,
)
from stoneforge.agents.provider_faults import ProviderFault
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidTransitionError
from stoneforge.git.repo import run_git
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import (
    Handoff,
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.store import Fence, Store

log = logging.getLogger("stoneforge.worker")

#: Turns an agent gets to answer a handoff request before the session is ended anyway.
HANDOFF_GRACE_TURNS = 3
#: Sessions per attempt at most: a runaway handoff loop must end somewhere.
MAX_SESSIONS_PER_ATTEMPT = 20
#: The stop reason (its start) of a run whose blocker failed for good: the task waits again.
BLOCKER_FAILED = "its blocker"


@dataclass
class SlotState:
    """What the live view shows of one running agent."""

    task_id: str
    title: str
    role: str = "worker"
    state: str = "starting"
    session_id: str | None = None
    context_tokens: int = 0
    cost_usd: float = 0.0
    started_at: datetime = field(default_factory=utcnow)


@dataclass
class RunResult:
    """How the attempt ended, for the dispatcher (retry timing, wake-ups)."""

    task_id: str
    status: TaskStatus
    reason: str = ""
    retry: bool = False
    #: Set when the provider ended the attempt (the task waits for it; no attempt spent).
    provider_fault: ProviderFault | None = None
    #: Set when its blockers' heads conflict (blocker -> head): not dispatched again until
    #: they change (no attempt spent).
    stack_conflict: dict[str, str] | None = None


@dataclass
class _HandoffWatch:
    """Per-session handoff bookkeeping, updated from the event stream."""

    threshold: int
    requested: bool = False
    turns_since_request: int = 0
    note: HandoffNote | None = None
    handoff_tool_ids: set[str] = field(default_factory=set)
    stop_now: bool = False
    #: Set when the task's spending reached its budget during this session: why.
    budget: str | None = None
    turns_priced: int = 0


class WorkerBase:
    """A worker run's state (set up by `WorkerRun.__init__`) and the helpers its parts share."""

    root: Path
    config: StoneforgeConfig
    store: Store
    provider: AgentProvider
    session_provider: AgentProvider
    task: Task
    target: str
    slot_index: int
    slot_env: dict[str, str]
    agent_env: dict[str, str]
    slot: SlotState
    on_change: Callable[[], None]
    on_commit: Callable[[], None]
    fence: Fence | None
    attempt: int
    _commit_tool_ids: set[str]
    live: AgentSession | None
    _starting: anyio.CancelScope | None
    dispatching: Callable[[], None]
    _session_id: str | None
    stopping: bool
    stop_reason: str
    summary: str | None
    last_text: str
    worktree: Path
    branch: str

    def _worktree_dir(self) -> Path:
        return self.config.orchestrator.worktree_dir(self.root)

    def _merge_base(self) -> str:
        head = run_git(["rev-parse", "HEAD"], self.worktree).stdout.strip()
        proc = run_git(["merge-base", self.target, head], self.root, check=False)
        return proc.stdout.strip() or head

    async def _own_base(self, known: str | None) -> str:
        """Where the task's own work starts: its stack base while stacked, else the merge base
        with the target (``known`` when the checkout already knew it)."""
        stacked = self.store.get_task(self.task.id).stack_base
        return stacked or known or await to_thread.run_sync(self._merge_base)

    def _latest_handoff(self) -> Handoff | None:
        handoffs = self.store.list_handoffs(self.task.id)
        return handoffs[-1] if handoffs else None

    def _end_session(self, session_id: str, status: SessionStatus, error: str | None) -> None:
        self.store.update_session(session_id, status=status, ended_at=utcnow(), error=error)

    def _requeue_without_cost(self, note: str) -> str | None:
        """Back to open with the attempt given back (the stop was not the task's fault); why
        not, when the task moved meanwhile (cancelled, or the lease is gone)."""
        try:
            self.store.transition_task(
                self.task.id,
                TaskEvent.REQUEUE,
                attempt=self.attempt,
                fence=self.fence,
                give_back_attempt=True,
                note=note,
            )
        except InvalidTransitionError as exc:
            log.info("task %s not requeued: %s", self.task.id, exc)
            return str(exc)
        return None
