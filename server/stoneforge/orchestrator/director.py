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
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anyio import to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stoneforge.agents import (
    AgentProvider,
    ClaudeCodeProvider,
    FailureKind,
    Role,
    SessionOutcome,
    SessionSpec,
    SessionStarted,
    StoneforgeTools,
    build_spec,
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
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.store import PlannedTask, Store, dependency_problems

log = logging.getLogger("stoneforge.director")

#: The director's checkout of the target tip, under the worktree directory.
DIRECTOR_WORKTREE = "_director"
#: Proposals the director may send: the first, and one corrected after the problems are named.
MAX_PROPOSALS = 2
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


# -- the proposal --------------------------------------------------------------------------------


def _text_of(value: Any) -> Any:
    # Models write keys as numbers now and then ("key": 1, "dependsOn": [1]); accept them.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _dependency_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):  # "a, b" or "a"
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [_text_of(item) for item in value]
    return value


class ProposedTask(BaseModel):
    """One task as the director proposes it (the items of ``propose_plan``'s ``tasks``)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=True)

    key: str
    title: str
    description: str = ""
    priority: int = Field(default=3, ge=1, le=5)
    depends_on: list[str] = Field(default_factory=list, alias="dependsOn")

    @field_validator("key", mode="before")
    @classmethod
    def _key_text(cls, value: Any) -> Any:
        return _text_of(value)

    @field_validator("key", "title")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _dependencies(cls, value: Any) -> Any:
        return _dependency_list(value)

    @field_validator("description", mode="before")
    @classmethod
    def _no_description(cls, value: Any) -> Any:
        return "" if value is None else value

    def planned(self) -> PlannedTask:
        return PlannedTask(
            key=self.key,
            title=self.title,
            description=self.description,
            priority=self.priority,
            depends_on=tuple(self.depends_on),
        )


class PlanProposal(BaseModel):
    """The arguments of ``propose_plan``: at least one task."""

    model_config = ConfigDict(extra="ignore")

    tasks: list[ProposedTask] = Field(min_length=1)

    @field_validator("tasks", mode="before")
    @classmethod
    def _decode(cls, value: Any) -> Any:
        if isinstance(value, str):  # the whole list sent as a JSON string
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be a list of task objects, not a string") from None
        return value

    def planned(self) -> list[PlannedTask]:
        return [task.planned() for task in self.tasks]


def _lenient(raw: Any) -> list[PlannedTask]:
    """Keys and dependencies of whatever task objects arrived, for the cross-task checks of a
    proposal that pydantic refused (it reported the fields, empty keys among them)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    if not isinstance(raw, list):
        return []
    found = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        key = _text_of(item.get("key"))
        if not isinstance(key, str) or not key.strip():
            continue
        deps = _dependency_list(item.get("dependsOn", item.get("depends_on")))
        deps = deps if isinstance(deps, list) else []
        found.append(
            PlannedTask(
                key=key.strip(),
                title=key,
                depends_on=tuple(d.strip() for d in deps if isinstance(d, str) and d.strip()),
            )
        )
    return found


def _where(loc: Sequence[int | str], raw: Any) -> str:
    """A pydantic error location as the director knows it: task number, key and field."""
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        index = loc[1]
        name = f"task #{index + 1}"
        if isinstance(raw, list) and index < len(raw) and isinstance(raw[index], Mapping):
            key = _text_of(raw[index].get("key"))
            if isinstance(key, str) and key.strip():
                name = f"task {key.strip()!r}"
        fields = [str(part) for part in loc[2:]]
        field = {"depends_on": "dependsOn"}.get(fields[0], fields[0]) if fields else ""
        return f"{name}, {'.'.join([field, *fields[1:]])}" if field else name
    return ".".join(str(part) for part in loc) or "the plan"


def review_proposal(args: Mapping[str, Any]) -> tuple[PlanProposal | None, list[str]]:
    """Validate ``propose_plan``'s arguments; returns the proposal, or every problem found.

    Field problems (pydantic) and cross-task problems (duplicate or unknown keys, a task
    depending on itself, cycles) are reported together, so one reply names everything.
    """
    raw = args.get("tasks")
    problems: list[str] = []
    proposal: PlanProposal | None = None
    try:
        proposal = PlanProposal.model_validate({} if raw is None else {"tasks": raw})
    except ValidationError as exc:
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "missing" and error["loc"] == ("tasks",):
                message = "is missing: send `tasks`, a list of task objects"
            problems.append(f"{_where(error['loc'], raw)}: {message}")
    problems.extend(dependency_problems(proposal.planned() if proposal else _lenient(raw)))
    return (proposal if not problems else None), problems


class _ProposalReview:
    """The `propose_plan` callback of one planning session: one try, plus one fix."""

    def __init__(self) -> None:
        self.attempts = 0
        self.accepted: PlanProposal | None = None
        self.problems: list[str] = []

    def consider(self, args: dict[str, Any]) -> ToolReply:
        if self.accepted is not None:
            return ToolReply("A plan was already accepted; there is nothing more to do.", True)
        if self.attempts >= MAX_PROPOSALS:
            return ToolReply("No more attempts: no plan will be created. Stop now.", True)
        self.attempts += 1
        proposal, problems = review_proposal(args)
        if proposal is not None:
            self.accepted = proposal
            keys = ", ".join(task.key for task in proposal.tasks)
            return ToolReply(
                f"Plan accepted: {len(proposal.tasks)} tasks ({keys}). Stoneforge creates them "
                "as a draft plan. Reply with a one-line summary and stop."
            )
        self.problems = problems
        listing = "\n".join(f"- {problem}" for problem in problems)
        if self.attempts < MAX_PROPOSALS:
            return ToolReply(
                f"The plan was not accepted:\n{listing}\n\nFix every problem above and call "
                "propose_plan again with the whole corrected plan (every task, not only the "
                "changed ones). This is your last attempt.",
                True,
            )
        return ToolReply(
            f"The plan is still invalid:\n{listing}\n\nNo plan will be created. Stop now.", True
        )

    def failure(self, outcome: SessionOutcome, session_id: str) -> str:
        listing = "; ".join(self.problems)
        if self.attempts >= MAX_PROPOSALS:
            return (
                f"the director proposed an invalid plan twice (session {session_id}), so no plan "
                f"was created. Problems with its last proposal: {listing}"
            )
        if self.attempts:
            return (
                f"the director's plan was invalid and it sent no corrected one (session "
                f"{session_id}), so no plan was created. Problems: {listing}"
            )
        if outcome.status != "completed":
            return (
                f"the director session {session_id} {outcome.status} before proposing a plan: "
                f"{outcome.error or 'no result'}. No plan was created"
            )
        said = outcome.last_text.strip()[:300]
        return (
            f"the director ended without proposing a plan (session {session_id})"
            + (f"; its last words: {said!r}" if said else "")
            + ". No plan was created"
        )


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
        self.provider = provider or ClaudeCodeProvider(
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
        review = _ProposalReview()
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
        configured = Path(self.config.orchestrator.worktreeDir)
        base = configured if configured.is_absolute() else self.root / configured
        return base / DIRECTOR_WORKTREE

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
    "MAX_PROPOSALS",
    "Director",
    "DirectorError",
    "PlanProposal",
    "ProposedTask",
    "answer_question",
    "plan_from_goal",
    "review_proposal",
]
