"""One worker run: a task's attempt, from worktree to merge request, across context handoffs.

The rules that matter:
- A session that ends successfully with commits on its branch completes the task, whether or not
  the agent called `complete_task`; work it left uncommitted is committed for it.
- When a turn's context reaches ``handoffAtTokens`` the agent is asked for a handoff; its work is
  committed, the session ends as ``handed_off`` and a fresh session continues on the same branch.
- When the task's spending reaches its budget (`budgets.perTaskUsd` / `perTaskTokens`, or its own)
  the agent is asked for a handoff the same way; after it, the task waits in ``budget_exceeded``
  for a person, its work committed and the handoff kept.
- A session that crashes, hangs or fails keeps nothing in limbo: its uncommitted work goes to a
  recovery ref, the worktree returns to the last commit, and the task goes back to the queue
  (or to ``failed`` after ``maxAttempts``).
- A session the provider failed (529, 5xx, refused connection, rate limit, no credit) is not the
  task's fault: its work is saved the same way, but the task waits in the queue
  (``wait_provider``) with its attempt given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    AgentSession,
    kill_tree,
)
from stoneforge.config import StoneforgeConfig
from stoneforge.git.clone_pool import pool_for
from stoneforge.git.errors import WorktreeError
from stoneforge.git.slug import task_branch, worktree_path
from stoneforge.git.stacking import RestackConflict
from stoneforge.git.task_clone import ensure_task_clone
from stoneforge.models import (
    Task,
)
from stoneforge.orchestrator.budgets import task_over_budget
from stoneforge.orchestrator.recovery import processes_of_session
from stoneforge.orchestrator.stacking import describe
from stoneforge.orchestrator.worker_base import (
    HANDOFF_GRACE_TURNS,
    MAX_SESSIONS_PER_ATTEMPT,
    RunResult,
    SlotState,
    WorkerBase,
)
from stoneforge.orchestrator.worker_endings import EndingsMixin
from stoneforge.orchestrator.worker_handoff import HandoffMixin
from stoneforge.orchestrator.worker_session import SessionMixin
from stoneforge.orchestrator.worker_stack import StackMixin
from stoneforge.store import Fence, Store

__all__ = ["HANDOFF_GRACE_TURNS", "MAX_SESSIONS_PER_ATTEMPT", "RunResult", "SlotState", "WorkerRun"]

log = logging.getLogger("stoneforge.worker")


class WorkerRun(SessionMixin, HandoffMixin, StackMixin, EndingsMixin, WorkerBase):
    """Runs one attempt of one task; create one per dispatch.

    Its parts: `worker_session` (running a session), `worker_handoff` (the handoff watch),
    `worker_endings` (completion, failures and publishing), `worker_stack` (stacked branches),
    over `worker_base`.
    """

    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        provider: AgentProvider,
        task: Task,
        target: str,
        agent_env: dict[str, str],
        slot: SlotState,
        on_change: Callable[[], None] = lambda: None,
        on_commit: Callable[[], None] = lambda: None,
        slot_index: int = 0,
        fence: Fence | None = None,
        session_provider: AgentProvider | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.provider = provider
        #: Where the task's own sessions run (the Ray backend's nodes); `provider` (this machine)
        #: still answers `ask_director`.
        self.session_provider = session_provider or provider
        self.task = task
        self.target = target
        #: `SF_TASK_SLOT` (0..maxConcurrent-1) lets parallel tasks pick distinct ports.
        self.slot_index = slot_index
        self.slot_env = {"SF_TASK_SLOT": str(slot_index)}
        self.agent_env = {**agent_env, **self.slot_env}
        self.slot = slot
        self.on_change = on_change
        self.on_commit = on_commit
        #: The orchestrator's lease: every state write of this run proves it still holds it.
        self.fence = fence
        #: Which attempt this run is: writes for an attempt that is no longer current are refused.
        self.attempt = task.dispatches
        self._commit_tool_ids: set[str] = set()
        self.live: AgentSession | None = None
        #: While a session's CLI is starting (before it is live): cancelling this ends the start.
        self._starting: anyio.CancelScope | None = None
        self._session_id: str | None = None
        self.stopping = False
        self.stop_reason = ""
        #: Ends this dispatch's mark for background work (`background.foreground`): set by the
        #: dispatcher, called once the session is opened.
        self.dispatching: Callable[[], None] = lambda: None
        self.summary: str | None = None
        self.last_text = ""

    async def stop(self, reason: str = "shutdown") -> None:
        """End the run early: at shutdown (the task is requeued) or because it was cancelled.

        Either way the session ends and its work is committed on the branch, never dropped.
        """
        self.stopping = True
        self.stop_reason = reason
        if self.live is not None:
            await self.live.stop(f"stoneforge: {reason}")
        elif self._starting is not None:
            # Its CLI is still coming up (tens of seconds on a busy machine) and has not been
            # given its prompt: nothing to save, so end it now instead of waiting for it.
            self._kill_session_processes()
            self._starting.cancel()

    def kill(self) -> None:
        """A forced stop: kill the session's CLI (and what it runs) now, saving nothing.

        The session stays `running` in the store: the next start's recovery saves its work
        to a recovery ref and requeues the task with its attempt given back.
        """
        self.stopping = True
        self.stop_reason = self.stop_reason or "forced stop"
        if self.live is not None:
            self.live.kill()
        self._kill_session_processes()

    def _kill_session_processes(self) -> None:
        """Kill the current session's processes, found by its config dir (so also a CLI
        whose pid is not known yet)."""
        if self._session_id is not None:
            for pid in processes_of_session(self.root, self._session_id):
                kill_tree(pid)

    async def run(self) -> RunResult:
        task = self.task
        worktree_dir = self._worktree_dir()
        branch = task.branch or task_branch(task.id, task.title)
        path = (
            Path(task.worktree)
            if task.worktree
            else worktree_path(worktree_dir, task.id, task.title)
        )
        self.slot.state = "preparing worktree"
        try:
            # Stacked on its blockers' heads while they are in review (`orchestrator.stacking`);
            # without stacking, no thread hop for nothing (dispatch is timed).
            start, plan = (
                await to_thread.run_sync(self._stack_start)
                if self.config.orchestrator.stacking
                else (None, None)
            )
        except RestackConflict as exc:  # its blockers conflict: it waits until one lands
            why = str(exc)
            return await to_thread.run_sync(lambda: self._unstackable(why))
        try:
            pool = pool_for(self.root, worktree_dir, self.target)
            wt = await to_thread.run_sync(
                lambda: ensure_task_clone(
                    self.root, path, branch, start_point=self.target, pool=pool, start_at=start
                )
            )
        except Exception as exc:  # Stoneforge's trouble, not the agent's: see _internal_error
            raise WorktreeError(f"could not prepare the task's checkout {path}: {exc}") from exc
        self.worktree = wt.path
        self.branch = branch
        moved = None
        if not wt.created:  # commits a previous run left in the clone, before anything reads it
            await self._publish()
            moved = await self._restack_own()  # its blockers may have landed or changed since
        else:
            self._record_start(start, plan)
            if start is not None and plan is not None:
                moved = (
                    f"Your branch starts {describe(plan.heads)}: their work is on it but not on "
                    f"{self.target} yet (they are in review). Your own changes are the commits "
                    f"after {start[:12]}; it is restacked for you when they land or change."
                )
            failed = await self._set_up_checkout()
            if failed is not None:
                self.store.update_task(task.id, branch=branch, worktree=str(wt.path))
                return self._fail_attempt(failed, retry=True)
        base = await self._own_base(wt.base)
        self.store.update_task(task.id, branch=branch, worktree=str(wt.path))
        handoff = self._latest_handoff()
        note = "\n\n".join(n for n in (task.note, moved) if n) or None
        for _ in range(MAX_SESSIONS_PER_ATTEMPT):
            if self.stopping:  # stopped between sessions, or before the first one started
                return await self._stopped(None)
            over = task_over_budget(self.store, self.task, self.config.budgets)
            if over is not None:  # no session starts on a spent budget
                return self._over_budget(over, handoff)
            outcome, watch, session_id = await self._run_session(handoff, note)
            note = None  # said once
            if self.stopping:
                return await self._stopped(session_id)
            if watch.requested and (
                watch.note is not None or watch.stop_now or self._ended_past_budget(watch, outcome)
            ):
                handoff = await self._hand_off(session_id, watch.note, base)
                if watch.budget is not None:
                    return self._over_budget(watch.budget, handoff)
                note = await self._restack_own()  # a safe point: no session runs
                if note is not None:
                    base = await self._own_base(None)
                continue
            if outcome.status == "completed":
                return await self._completed(session_id, base)
            return await self._crashed(
                session_id, outcome.status, outcome.error or "ended badly", outcome.provider_fault
            )
        return self._fail_attempt(
            f"more than {MAX_SESSIONS_PER_ATTEMPT} sessions in one attempt", retry=False
        )
