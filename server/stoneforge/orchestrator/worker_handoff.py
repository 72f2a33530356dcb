"""The handoff watch of a worker run: the context threshold and the budget, read from the
session's events; the handoff asked for, recorded, or written from facts."""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.agents import (
    AssistantTurn,
    HandoffNote,
    SessionOutcome,
    SessionStarted,
    ToolResult,
)
from stoneforge.agents.events import AgentEvent
from stoneforge.errors import InvalidTransitionError
from stoneforge.git.errors import GitLayerError
from stoneforge.git.repo import run_git
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import (
    Handoff,
    SessionStatus,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.budgets import task_over_budget
from stoneforge.orchestrator.prompts import BUDGET_HANDOFF_REQUEST, HANDOFF_REQUEST
from stoneforge.orchestrator.worker_base import (
    HANDOFF_GRACE_TURNS,
    RunResult,
    WorkerBase,
    _HandoffWatch,
)

log = logging.getLogger("stoneforge.worker")


class HandoffMixin(WorkerBase):
    """The handoff watch of a worker run."""

    async def _watch_event(self, session_id: str, watch: _HandoffWatch, event: AgentEvent) -> None:
        if isinstance(event, SessionStarted):
            self.store.update_session(
                session_id, pid=event.pid, provider_session_id=event.provider_session_id
            )
            return
        if isinstance(event, AssistantTurn):
            for use in event.tool_uses:
                if use.name.endswith("__handoff"):
                    watch.handoff_tool_ids.add(use.id)
                elif use.name == "Bash" and "commit" in str(use.input.get("command", "")):
                    self._commit_tool_ids.add(use.id)
            if watch.requested:
                watch.turns_since_request += 1
                if watch.turns_since_request > HANDOFF_GRACE_TURNS and watch.note is None:
                    watch.stop_now = True  # it will not hand off: end it and write one ourselves
            elif event.context_tokens >= watch.threshold:
                watch.requested = True
                self.slot.state = "handing off"
                self.on_change()
                self.store.record_event(
                    "session.handoff_requested",
                    "session",
                    session_id,
                    {"taskId": self.task.id, "contextTokens": event.context_tokens},
                )
                if self.live is not None:
                    await self.live.send(HANDOFF_REQUEST)
        elif isinstance(event, ToolResult) and event.tool_use_id in watch.handoff_tool_ids:
            watch.stop_now = True  # the handoff is recorded: nothing more to do in this session
        elif isinstance(event, ToolResult) and event.tool_use_id in self._commit_tool_ids:
            # Publishing here only keeps the repository's view fresh (the forecast); the
            # session's end publishes for real. A git hiccup now must not end the session.
            try:
                await self._publish()
            except GitLayerError as exc:
                log.warning("task %s: its new commit is not published yet: %s", self.task.id, exc)
            else:
                self.on_commit()
        if watch.stop_now and self.live is not None:
            await self.live.stop("handoff")

    async def _check_budget(self, session_id: str, watch: _HandoffWatch) -> None:
        """After each turn: once the task's spending (this session's included) reaches its
        budget, ask for a handoff, as at the context threshold; the run ends after it."""
        if watch.budget is not None:
            return
        over = task_over_budget(self.store, self.task, self.config.budgets)
        if over is None:
            return
        watch.budget = over
        spent = self.store.cost_totals(task_id=self.task.id)
        self.store.record_event(
            "session.budget_reached",
            "session",
            session_id,
            {
                "taskId": self.task.id,
                "why": over,
                "costUsd": spent.cost_usd,
                "tokens": spent.tokens,
            },
        )
        if watch.requested:  # a context handoff is under way already: it serves for both
            return
        watch.requested = True
        self.slot.state = "handing off (budget)"
        self.on_change()
        if self.live is not None:
            await self.live.send(BUDGET_HANDOFF_REQUEST)

    def _ended_past_budget(self, watch: _HandoffWatch, outcome: SessionOutcome) -> bool:
        """The budget was reached and the session ended on its own without handing off or
        reporting the task complete (it ended its turn before it read the request): it still
        stops at its budget, with a handoff written from the facts, and is never landed."""
        return watch.budget is not None and outcome.status == "completed" and self.summary is None

    def _over_budget(self, why: str, handoff: Handoff | None) -> RunResult:
        """The task's budget is spent: it waits in budget_exceeded for a person, its work
        committed on its branch and its latest handoff kept for the session that continues."""
        kept = f"; handoff {handoff.id} is kept for the next session" if handoff else ""
        note = (
            f"Budget reached: {why}. The work so far is committed on {self.branch}{kept}. "
            f"`sf task retry {self.task.id} --budget USD` gives it a bigger budget and "
            "continues it; `sf task cancel` ends it."
        )
        try:
            self.store.transition_task(
                self.task.id,
                TaskEvent.EXCEED_BUDGET,
                attempt=self.attempt,
                fence=self.fence,
                note=note,
            )
        except InvalidTransitionError as exc:  # cancelled meanwhile, or the lease is gone
            log.info("task %s not stopped at its budget: %s", self.task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(self.task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "budget reached"
        return RunResult(self.task.id, TaskStatus.BUDGET_EXCEEDED, why)

    async def _on_handoff(self, watch: _HandoffWatch, note: HandoffNote) -> None:
        watch.note = note
        watch.requested = True

    async def _hand_off(self, session_id: str, note: HandoffNote | None, base: str) -> Handoff:
        await self._commit_leftovers(
            f"stoneforge: work of session {session_id} at its context handoff"
        )
        head = await to_thread.run_sync(
            lambda: run_git(["rev-parse", "HEAD"], self.worktree).stdout.strip()
        )
        if note is not None:
            handoff = Handoff(
                task_id=self.task.id,
                session_id=session_id,
                done=note.done,
                remaining=note.remaining,
                files_touched=note.files_touched,
                decisions=note.decisions,
                failing_tests=note.failing_tests,
                next_step=note.next_step,
                commit=head,
                source="agent",
                created_at=utcnow(),
            )
        else:
            handoff = await to_thread.run_sync(lambda: self._facts_handoff(session_id, base, head))
        stored = self.store.add_handoff(handoff)
        self.store.update_session(session_id, status=SessionStatus.HANDED_OFF, ended_at=utcnow())
        self.slot.state = "handed off"
        self.on_change()
        return stored

    def _facts_handoff(self, session_id: str, base: str, head: str) -> Handoff:
        """A handoff written from facts when the agent gave none."""
        commits = run_git(["log", "--format=%h %s", f"{base}..{head}"], self.worktree).stdout
        files = run_git(["diff", "--name-only", base, head], self.worktree).stdout.split()
        stat = run_git(["diff", "--stat", base, head], self.worktree).stdout.strip()
        last = self.last_text.strip()[-1500:]
        return Handoff(
            task_id=self.task.id,
            session_id=session_id,
            done=("Commits so far:\n" + commits.strip()) if commits.strip() else "No commits yet.",
            remaining="Not stated: the session gave no handoff. Read the diff and continue.",
            files_touched=files,
            decisions=[],
            failing_tests=[],
            next_step=(f"The last message was: {last}" if last else "Review the diff so far.")
            + (f"\n\nDiffstat:\n{stat}" if stat else ""),
            commit=head,
            source="orchestrator",
            created_at=utcnow(),
        )
