"""The director's plan proposal: validation of what `propose_plan` sends, and the tool's
callback for one planning session (one try, plus one fix after the problems are named).

Models write proposals loosely (keys as numbers, dependencies as "a, b", a JSON string for the
whole list); what can be read unambiguously is accepted, and every problem is named with where
it is, so the director can fix them all at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stoneforge.agents import SessionOutcome
from stoneforge.agents.mcp_tools import ToolReply
from stoneforge.store import PlannedTask, dependency_problems

#: Proposals the director may send: the first, and one corrected after the problems are named.
MAX_PROPOSALS = 2


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


class ProposalReview:
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
