"""The director: a goal becomes a plan of tasks, and workers' questions get answers.

Planning: a Claude Code session in the director role (read-only tools: Read, Glob, Grep) runs
in a detached checkout of the target tip, ``<worktreeDir>/_director``. It reads the code and
calls the ``propose_plan`` tool of the in-process `stoneforge` MCP server. The proposal is
validated with pydantic (unknown dependency keys, cycles, empty titles, priorities outside 1-5);
an invalid one is answered with an error that lists every problem, and the director gets one
more try in the same session. Only a valid proposal creates anything: the draft plan, its
tasks and their dependencies in one store transaction.

Questions: a worker's ``ask_director(question)`` resumes the plan's director conversation
(by provider session id, in the same config dir and working directory, so it keeps the
context of the planning and of earlier questions) with the question; its reply is the
tool's result. A plan without one (made by hand, or its transcript is gone) gets a fresh
director session that becomes the plan's. Questions of one plan are answered one at a time;
each question and answer is recorded on the task (``task.question`` events).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    FailureKind,
    Role,
    SessionOutcome,
    SessionSpec,
    SessionStarted,
    StoneforgeTools,
    build_spec,
    claude_code_provider,
    claude_setup,
    default_config_dir,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.agents.doctor import check_credentials
from stoneforge.agents.events import AgentEvent
from stoneforge.agents.mcp_tools import DEFAULT_DIRECTOR_ANSWER, PROPOSE_PLAN, ToolReply
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidInputError, StoneforgeError
from stoneforge.git.errors import GitLayerError
from stoneforge.git.repo import resolve_commit
from stoneforge.git.worktrees import checkout_detached
from stoneforge.models import Plan, SessionRole, SessionStatus, Task, TaskStatus, utcnow
from stoneforge.orchestrator.plan_proposal import ProposalReview
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.store import Store

log = logging.getLogger("stoneforge.director")

#: The director's checkout of the target tip, under the worktree directory.
DIRECTOR_WORKTREE = "_director"
#: At most this many answer characters go back to the worker.
MAX_ANSWER_CHARS = 20_000
#: Open tasks listed in the planning prompt (so the director does not plan them again).
MAX_LISTED_TASKS = 30

PLAN_PROMPT_HEAD = "Stoneforge director: plan the goal below."
NUDGE = (
    "Stoneforge: you have not proposed the plan yet. Call the `mcp__stoneforge__propose_plan` "
    "tool now with every task of the plan (key, title, description, priority, dependsOn)."
)


class DirectorError(StoneforgeError):
    """The director could not produce a valid plan; nothing was created."""


# -- prompts -------------------------------------------------------------------------------------


def _plan_prompt(
    title: str, goal: str, target: str, commit: str, open_tasks: Sequence[Task]
) -> str:
    parts = [
        PLAN_PROMPT_HEAD,
        f"Plan title: {title}\nGoal:\n{goal}",
        f"Your working directory is a read-only checkout of `{target}` at commit {commit[:12]}: "
        "the code every task will start from. Read what you need (Read, Glob, Grep), then call "
        "the `mcp__stoneforge__propose_plan` tool once with every task of the plan:\n"
        "- key: a short unique name, used in dependsOn;\n"
        "- title: what to do, in one line;\n"
        "- description: enough to act on alone, with acceptance criteria;\n"
        "- priority: 1 (most urgent) to 5;\n"
        "- dependsOn: keys of the tasks that must be merged before this one can start.\n"
        "Dependencies must not form a cycle. Workers do tasks in parallel on separate branches: "
        "split the work so tasks touch different files where you can, and add a dependency "
        "where one task needs another's result. When the plan is accepted, reply with one line "
        "and stop.",
    ]
    if open_tasks:
        listed = "\n".join(f"- {t.id} {t.title}" for t in open_tasks[:MAX_LISTED_TASKS])
        parts.append(f"Tasks already open in this repository (do not plan them again):\n{listed}")
    return "\n\n".join(parts)


def _question_prompt(task: Task, question: str) -> str:
    return (
        f"Stoneforge: the worker of task {task.id} ({task.title}) asks you a question.\n\n"
        f"Question: {question}\n\n"
        "Answer in plain text, directly and briefly: the decision and the reason. If the code "
        "already answers it, name the file. Your reply is given to the worker as it is."
    )


def _fresh_question_prompt(task: Task, plan: Plan | None, plan_tasks: Sequence[Task]) -> str:
    parts = ["Stoneforge director: you answer the questions of the workers"]
    if plan is not None:
        parts[0] += f" of the plan {plan.id} '{plan.title}'."
        if plan.goal:
            parts.append(f"The plan's goal:\n{plan.goal}")
        if plan_tasks:
            listed = "\n".join(
                f"- {t.id} {t.title} ({t.status.value})" for t in plan_tasks[:MAX_LISTED_TASKS]
            )
            parts.append(f"Its tasks:\n{listed}")
    else:
        parts[0] += " of tasks that belong to no plan."
    details = f"The task: {task.id} {task.title}"
    if task.description:
        details += f"\n{task.description}"
    parts.append(details)
    parts.append(
        "Your working directory is a read-only checkout of the target branch; read the code "
        "when it helps."
    )
    return "\n\n".join(parts)


# -- the director --------------------------------------------------------------------------------

_CHECKOUT_LOCK = threading.Lock()
_SCOPE_LOCKS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str | None], asyncio.Lock]
] = weakref.WeakKeyDictionary()


def _scope_lock(store: Store, plan_id: str | None) -> asyncio.Lock:
    """One conversation per plan: its questions are answered one at a time."""
    locks = _SCOPE_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault((str(store.path), plan_id), asyncio.Lock())


class Director:
    """The director of one repository, for one target branch."""

    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        target: str,
        provider: AgentProvider | None = None,
        agent_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.target = target
        self.settings = config.agents.director
        self.provider = provider or claude_code_provider(
            cli_path=self.settings.cliPath, sandbox=config.agents.sandbox
        )
        self.agent_env = dict(agent_env or {})

    # -- planning ------------------------------------------------------------------------------

    async def plan(self, title: str, goal: str) -> Plan:
        """Run a director session on ``goal``; create the draft plan it proposes.

        Raises :class:`DirectorError` (nothing created) when no valid plan came out of it.
        """
        title, goal = title.strip(), goal.strip()
        if not title:
            raise InvalidInputError("plan title must not be empty")
        if not goal:
            raise InvalidInputError("the goal must not be empty")
        credentials = check_credentials({**os.environ, **self.agent_env})
        if not credentials.ok:
            raise DirectorError(
                f"the director cannot run: {credentials.detail}. No plan was created; "
                f"{credentials.hint}"
            )
        cwd = await self.checkout()
        commit = await to_thread.run_sync(lambda: resolve_commit(self.root, self.target))
        open_tasks = self.store.list_tasks(status=TaskStatus.OPEN)
        review = ProposalReview()
        tools = StoneforgeTools(on_propose_plan=review.consider, enabled=(PROPOSE_PLAN,))
        prompt = _plan_prompt(title, goal, self.target, commit, open_tasks)
        first_dir: list[Path] = []

        def fresh(session_id: str) -> SessionSpec:
            first_dir.append(default_config_dir(self.root, session_id))
            return self._spec(cwd, prompt, first_dir[0], tools)

        session_id, outcome = await self._run(None, fresh)
        if (
            review.attempts == 0
            and outcome.status == "completed"
            and outcome.provider_session_id is not None
        ):
            # It answered without proposing anything: remind it once, in the same conversation.
            again = self._spec(cwd, NUDGE, first_dir[0], tools, outcome.provider_session_id)
            session_id, outcome = await self._run(None, lambda _: again)
        if review.accepted is None:
            raise DirectorError(review.failure(outcome, session_id))
        plan = self.store.create_plan_with_tasks(title, goal, review.accepted.planned())
        if outcome.provider_session_id:
            self.store.set_director_session(
                plan.id,
                session_id=session_id,
                provider_session_id=outcome.provider_session_id,
                config_dir=first_dir[0],
                cwd=cwd,
            )
        log.info("director planned %s with %s tasks", plan.id, len(plan.task_ids))
        return plan

    # -- questions -----------------------------------------------------------------------------

    async def answer(self, task: Task, question: str) -> str:
        """The director's answer to a worker's question, recorded on the task.

        Never raises for a director that cannot answer: the worker then gets the default
        answer (make a reasonable assumption and say so) with the reason, recorded as well.
        """
        question = question.strip()
        if not question:
            return "Your question was empty: ask one precise question."
        asked_at = utcnow()
        session_id: str | None = None
        error: str | None = None
        answer = ""
        try:
            async with _scope_lock(self.store, task.plan_id):
                session_id, outcome = await self._converse(task, question)
            answer = (outcome.last_text or (outcome.result.text if outcome.result else "")).strip()
            if outcome.status != "completed" or not answer:
                error = outcome.error or "the director gave no answer"
        except Exception as exc:  # a broken checkout or store must not break the worker
            log.exception("the director could not answer a question of %s", task.id)
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            answer = f"The director could not answer ({error}). {DEFAULT_DIRECTOR_ANSWER}"
        answer = answer[:MAX_ANSWER_CHARS]
        self.store.record_question(
            task.id, question, answer, session_id=session_id, error=error, asked_at=asked_at
        )
        return answer

    async def _converse(self, task: Task, question: str) -> tuple[str, SessionOutcome]:
        """Resume the plan's director with the question, or start one that becomes the plan's."""
        cwd = await self.checkout()
        tools = StoneforgeTools(on_propose_plan=_no_plan_now, enabled=(PROPOSE_PLAN,))
        ref = self.store.director_session(task.plan_id)
        if ref is not None:
            spec = self._spec(
                Path(ref.cwd),
                _question_prompt(task, question),
                Path(ref.config_dir),
                tools,
                ref.provider_session_id,
            )
            session_id, outcome = await self._run(task.id, lambda _: spec)
            resumable = outcome.failure is None or outcome.failure.kind != FailureKind.STARTUP
            if resumable:
                if outcome.provider_session_id not in (None, ref.provider_session_id):
                    self._remember(task.plan_id, session_id, outcome, ref.config_dir, ref.cwd)
                return session_id, outcome
            log.warning(
                "could not resume the director of %s (%s); starting a fresh one",
                task.plan_id or "tasks of no plan",
                outcome.error,
            )
        prompt = self._fresh_prompt(task) + "\n\n" + _question_prompt(task, question)
        config_dirs: list[Path] = []

        def fresh(sid: str) -> SessionSpec:
            config_dirs.append(default_config_dir(self.root, sid))
            return self._spec(cwd, prompt, config_dirs[0], tools)

        session_id, outcome = await self._run(task.id, fresh)
        if outcome.status == "completed":
            self._remember(task.plan_id, session_id, outcome, config_dirs[0], cwd)
        return session_id, outcome

    def _fresh_prompt(self, task: Task) -> str:
        plan = self.store.get_plan(task.plan_id) if task.plan_id else None
        plan_tasks = self.store.list_tasks(plan_id=plan.id) if plan is not None else []
        return _fresh_question_prompt(task, plan, plan_tasks)

    def _remember(
        self,
        plan_id: str | None,
        session_id: str | None,
        outcome: SessionOutcome,
        config_dir: Path | str,
        cwd: Path | str,
    ) -> None:
        if outcome.provider_session_id:
            self.store.set_director_session(
                plan_id,
                session_id=session_id,
                provider_session_id=outcome.provider_session_id,
                config_dir=config_dir,
                cwd=cwd,
            )

    # -- plumbing ------------------------------------------------------------------------------

    def worktree_path(self) -> Path:
        return self.config.orchestrator.worktree_dir(self.root) / DIRECTOR_WORKTREE

    async def checkout(self) -> Path:
        """The director's checkout, moved to the target tip (read-only work: nothing to lose)."""
        return await to_thread.run_sync(self._checkout)

    def _checkout(self) -> Path:
        path = self.worktree_path()
        with _CHECKOUT_LOCK:
            for attempt in range(3):
                try:
                    return checkout_detached(self.root, path, self.target)
                except GitLayerError as exc:
                    # Another process (a CLI planning while `sf serve` answers) may hold the
                    # checkout's index lock for a moment; a stale checkout is still readable.
                    if attempt == 2:
                        if path.is_dir():
                            log.warning("director checkout not refreshed: %s", exc)
                            return path.resolve()
                        raise
                    time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _spec(
        self,
        cwd: Path,
        prompt: str,
        config_dir: Path,
        tools: StoneforgeTools,
        resume: str | None = None,
    ) -> SessionSpec:
        return build_spec(
            Role.DIRECTOR,
            cwd=cwd,
            prompt=prompt,
            config_dir=config_dir,
            repo_root=self.root,
            target_branch=self.target,
            model=self.settings.model,
            mcp=tools,
            env=self.agent_env,
            max_turns=self.settings.maxTurns,
            idle_timeout_s=self.settings.idleTimeoutS,
            resume=resume,
            claude_setup=claude_setup.for_role(
                self.root,
                inherit=self.config.agents.claudeSetup == "inherit",
                mcp_servers=self.settings.mcpServers == "inherit",
            ),
        )

    async def _run(
        self, task_id: str | None, make_spec: Callable[[str], SessionSpec]
    ) -> tuple[str, SessionOutcome]:
        """One director session, recorded in the store (role director) from start to end."""
        session = self.store.start_session(task_id, SessionRole.DIRECTOR)
        spec = make_spec(session.id)

        def on_event(event: AgentEvent) -> None:
            if isinstance(event, SessionStarted):
                self.store.update_session(
                    session.id, pid=event.pid, provider_session_id=event.provider_session_id
                )

        def on_update(stats: TokenStats) -> None:
            record_token_stats(self.store, session.id, stats)

        try:
            outcome = await run_session(self.provider, spec, on_update=on_update, on_event=on_event)
        except BaseException as exc:  # cancelled (the asking worker stopped) or a bug
            self.store.update_session(
                session.id,
                status=SessionStatus.FAILED,
                ended_at=utcnow(),
                error=f"interrupted: {type(exc).__name__}: {exc}",
            )
            raise
        status = {
            "completed": SessionStatus.COMPLETED,
            "crashed": SessionStatus.CRASHED,
        }.get(outcome.status, SessionStatus.FAILED)
        self.store.update_session(
            session.id,
            status=status,
            ended_at=utcnow(),
            pid=outcome.pid,
            provider_session_id=outcome.provider_session_id,
            error=outcome.error,
        )
        return session.id, outcome


def _no_plan_now(args: dict[str, Any]) -> ToolReply:
    return ToolReply(
        "No plan is being made now: answer the worker's question in plain text instead.", True
    )


async def plan_from_goal(
    *,
    root: Path,
    config: StoneforgeConfig,
    store: Store,
    title: str,
    goal: str,
    target: str,
    provider: AgentProvider | None = None,
    agent_env: Mapping[str, str] | None = None,
) -> Plan:
    """A draft plan with the tasks a director session proposes for ``goal``."""
    director = Director(
        root=root, config=config, store=store, target=target, provider=provider, agent_env=agent_env
    )
    return await director.plan(title, goal)


async def answer_question(
    *,
    root: Path,
    config: StoneforgeConfig,
    store: Store,
    task: Task,
    question: str,
    target: str,
    provider: AgentProvider | None = None,
    agent_env: Mapping[str, str] | None = None,
) -> str:
    """A worker's ``ask_director``: the plan's director answers; both are stored on the task."""
    director = Director(
        root=root, config=config, store=store, target=target, provider=provider, agent_env=agent_env
    )
    return await director.answer(task, question)


__all__ = [
    "DIRECTOR_WORKTREE",
    "Director",
    "DirectorError",
    "answer_question",
    "plan_from_goal",
]
