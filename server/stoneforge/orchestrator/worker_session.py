"""Running one agent session of a worker run: the checkout's set-up, the session's spec and
prompt, and the tools' answers (`complete_task`, `ask_director`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentSession,
    Role,
    SessionOutcome,
    StoneforgeTools,
    build_spec,
    claude_setup,
    default_config_dir,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.agents.events import AgentEvent
from stoneforge.git.repo import run_git
from stoneforge.models import (
    Handoff,
    SessionRole,
)
from stoneforge.orchestrator.checkout_setup import copy_untracked, run_setup, setup_failure
from stoneforge.orchestrator.director import answer_question
from stoneforge.orchestrator.prompts import worker_prompt
from stoneforge.orchestrator.refusals import RefusalRecorder
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.orchestrator.worker_base import (
    WorkerBase,
    _HandoffWatch,
)

log = logging.getLogger("stoneforge.worker")


class SessionMixin(WorkerBase):
    """Running one agent session of a worker run."""

    async def _set_up_checkout(self) -> str | None:
        """`worktree.copy` and `worktree.setup` in the new checkout; why it failed, or None."""
        setup = self.config.worktree
        if not (setup.copyFiles or setup.setup):
            return None
        self.slot.state = "setting up the checkout"
        self.on_change()
        await to_thread.run_sync(lambda: copy_untracked(self.root, self.worktree, setup.copyFiles))
        runs = await run_setup(setup.setup, self.worktree, setup.setupTimeoutS, self.slot_env)
        failure = setup_failure(runs)
        if failure is None:
            # What the set-up made (a venv, node_modules) is not the agent's work: keep it out of
            # the commits made for the agent, without touching the branch's own .gitignore.
            await to_thread.run_sync(self._exclude_setup_output)
        return failure

    def _exclude_setup_output(self) -> None:
        untracked = run_git(
            ["ls-files", "--others", "--exclude-standard", "--directory"], self.worktree
        ).stdout.split()
        if untracked:
            info = Path(
                run_git(["rev-parse", "--git-path", "info/exclude"], self.worktree).stdout.strip()
            )
            info = info if info.is_absolute() else self.worktree / info
            info.parent.mkdir(parents=True, exist_ok=True)
            with info.open("a", encoding="utf-8") as out:
                out.write("".join(f"/{name}\n" for name in untracked))

    async def _run_session(
        self, handoff: Handoff | None, note: str | None
    ) -> tuple[Any, _HandoffWatch, str]:
        session = self.store.start_session(self.task.id, SessionRole.WORKER)
        self._session_id = session.id
        self.slot.session_id = session.id
        self.slot.state = "running"
        self.slot.context_tokens = 0
        self.on_change()
        watch = _HandoffWatch(threshold=self.config.orchestrator.handoffAtTokens)
        tools = StoneforgeTools(
            on_complete=self._on_complete,
            on_handoff=lambda n: self._on_handoff(watch, n),
            on_ask_director=self._ask_director,
        )
        worker = self.config.agents.worker
        spec = build_spec(
            Role.WORKER,
            cwd=self.worktree,
            prompt=self._prompt(handoff, note),
            config_dir=default_config_dir(self.root, session.id),
            repo_root=self.root,
            target_branch=self.target,
            model=worker.model,
            mcp=tools,
            env=self.agent_env,
            max_turns=worker.maxTurns,
            idle_timeout_s=worker.idleTimeoutS,
            claude_setup=claude_setup.for_role(
                self.root,
                inherit=self.config.agents.claudeSetup == "inherit",
                mcp_servers=worker.mcpServers == "inherit",
            ),
        )

        async def on_start(live: AgentSession) -> None:
            self.live = live
            self._starting = None  # from now on a stop goes through the live session
            if live.pid:  # recorded at spawn, so recovery finds the CLI even if we die now
                self.store.update_session(session.id, pid=live.pid)
            if self.stopping:
                await live.stop("the orchestrator is stopping")

        refusals = RefusalRecorder(self.store, self.task.id, session.id, self.worktree, spec.env)

        async def on_event(event: AgentEvent) -> None:
            refusals.observe(event)  # an escape attempt is noted on the task, never fatal
            await self._watch_event(session.id, watch, event)

        async def on_update(stats: TokenStats) -> None:
            self.slot.context_tokens = stats.context_tokens
            self.slot.cost_usd = stats.cost_usd or self.slot.cost_usd
            record_token_stats(self.store, session.id, stats)
            self.on_change()
            if stats.turns > watch.turns_priced:  # a new turn (not the final result)
                watch.turns_priced = stats.turns
                await self._check_budget(session.id, watch)

        outcome: SessionOutcome | None = None
        self.dispatching()  # prepared: background work may go on from here
        with anyio.CancelScope() as self._starting:
            outcome = await run_session(
                self.session_provider,
                spec,
                on_update=on_update,
                on_event=on_event,
                on_start=on_start,
            )
        self._starting = None
        self.live = None
        if outcome is None:  # stopped while its CLI was starting
            self._kill_session_processes()  # in case it was spawned as the start was cancelled
            outcome = SessionOutcome(status="stopped")
        if outcome.last_text:
            self.last_text = outcome.last_text
        self.store.update_session(
            session.id,
            pid=outcome.pid,
            provider_session_id=outcome.provider_session_id,
        )
        return outcome, watch, session.id

    async def _on_complete(self, summary: str) -> None:
        self.summary = summary
        self.store.record_event(
            "task.complete_reported", "task", self.task.id, {"summary": summary[:500]}
        )

    async def _ask_director(self, question: str) -> str:
        """`ask_director`: the plan's director answers (the answer is the tool's result)."""
        self.slot.state = "asking the director"
        self.on_change()
        try:
            return await answer_question(
                root=self.root,
                config=self.config,
                store=self.store,
                task=self.task,
                question=question,
                target=self.target,
                provider=self.provider,
                agent_env=self.agent_env,
            )
        finally:
            self.slot.state = "running"
            self.on_change()

    def _prompt(self, handoff: Handoff | None, note: str | None) -> str:
        plan = None
        plan_titles: list[str] = []
        if self.task.plan_id:
            plan = self.store.get_plan(self.task.plan_id)
            plan_titles = [
                f"{t.id} {t.title} ({t.status.value})"
                for t in self.store.list_tasks(plan_id=plan.id)
                if t.id != self.task.id
            ][:30]
        warnings = self._forecast_warnings()
        return worker_prompt(
            self.task,
            branch=self.branch,
            target=self.target,
            plan=plan,
            plan_titles=plan_titles,
            handoff=handoff,
            note=note,
            warnings=warnings,
        )

    def _forecast_warnings(self) -> list[str]:
        """Predicted conflicts involving this task, from the latest recorded forecast."""
        event = self.store.last_event("forecast.updated")
        if event is None:
            return []
        found = []
        for pair in event.data.get("conflicts", []):
            if self.task.id in (pair.get("ours"), pair.get("theirs")):
                other = pair["theirs"] if pair.get("ours") == self.task.id else pair["ours"]
                files = ", ".join(pair.get("paths", []))
                found.append(f"your branch and {other} both change {files}")
        return found
