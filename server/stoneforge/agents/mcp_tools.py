"""The in-process `stoneforge` MCP server: how agents talk to the orchestrator.

Tools: ``complete_task(summary)``, ``handoff(done, remaining, filesTouched, decisions,
failingTests, nextStep)`` and ``ask_director(question)``; and, for the director only,
``propose_plan(tasks)``. Each call is recorded on the :class:`StoneforgeTools` instance and
handed to the caller's callback (sync or async). The completion rule never depends on
these calls; they only add information.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:  # the SDK (and MCP) load only when a session's tools are built: ~1.2 s
    from claude_agent_sdk import McpSdkServerConfig, SdkMcpTool

SERVER_NAME = "stoneforge"
COMPLETE_TASK = "complete_task"
HANDOFF = "handoff"
ASK_DIRECTOR = "ask_director"
PROPOSE_PLAN = "propose_plan"
SUBMIT_REVIEW = "submit_review"
#: The tools a StoneforgeTools offers by default (propose_plan is the director's, opt-in).
ALL_TOOLS = (COMPLETE_TASK, HANDOFF, ASK_DIRECTOR)
DEFAULT_DIRECTOR_ANSWER = (
    "No director is available right now. Make the most reasonable assumption, state it in "
    "your commit message or summary, and carry on."
)

T = TypeVar("T")
MaybeAwaitable = T | Awaitable[T]


def mcp_tool_name(name: str) -> str:
    return f"mcp__{SERVER_NAME}__{name}"


class HandoffNote(BaseModel):
    """What a session passes to its successor (the fields of the `handoff` tool)."""

    model_config = ConfigDict(populate_by_name=True)

    done: str
    remaining: str
    files_touched: list[str] = Field(default_factory=list, alias="filesTouched")
    decisions: list[str] = Field(default_factory=list)
    failing_tests: list[str] = Field(default_factory=list, alias="failingTests")
    next_step: str = Field(alias="nextStep")


class ReviewCommentInput(BaseModel):
    """One comment of a submitted review: a file of the change, a line of its new version."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    line: int | None = Field(default=None, ge=1)
    body: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        value = value.strip().removeprefix("./")
        if not value or value.startswith("/"):
            raise ValueError("must be a path relative to the repository root, like src/app.py")
        return value


class ReviewSubmission(BaseModel):
    """The arguments of `submit_review`, checked before the orchestrator sees them."""

    model_config = ConfigDict(extra="forbid")

    verdict: Literal["approve", "request_changes"]
    summary: str = Field(min_length=1)
    comments: list[ReviewCommentInput] = Field(default_factory=list)

    @field_validator("comments", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # Models sometimes send the list as JSON text.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError("must be a list of {path, line, body} objects") from None
        return value

    @field_validator("summary")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must say what you found, in a sentence or two")
        return value.strip()

    def problems(self) -> list[str]:
        """What is wrong beyond the types: a change request must say what to change, where."""
        if self.verdict == "request_changes" and not self.comments:
            return [
                "comments: request_changes needs at least one comment with path, line and body "
                "saying what to change"
            ]
        return []


def review_submission_errors(error: ValidationError) -> list[str]:
    """Every problem of a bad `submit_review` call, one line each, naming the field."""
    lines = []
    for err in error.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(arguments)"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {message}")
    return lines


@dataclass(frozen=True)
class ToolCallRecord:
    tool: str
    arguments: dict[str, Any]
    at: float


_STR_LIST = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
_HANDOFF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "done": {"type": "string", "description": "What is finished and committed."},
        "remaining": {"type": "string", "description": "What is left to do."},
        "filesTouched": {**_STR_LIST, "description": "Files changed so far."},
        "decisions": {**_STR_LIST, "description": "Decisions made and why."},
        "failingTests": {**_STR_LIST, "description": "Tests failing right now."},
        "nextStep": {"type": "string", "description": "The very next thing to do."},
    },
    "required": ["done", "remaining", "nextStep"],
}


# Deliberately loose: the SDK validates arguments against this schema before our handler
# sees them, and a schema error would reach the model as a bare "Input validation error"
# that names one problem. The director's own validation reports every problem at once.
_PROPOSE_PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": ["array", "string"],
            "description": "Every task of the plan, in the order you would do them.",
            "items": {
                "type": "object",
                "properties": {
                    "key": {
                        "type": ["string", "integer"],
                        "description": "Short unique name of the task, used in dependsOn.",
                    },
                    "title": {"type": "string", "description": "What to do, in one line."},
                    "description": {
                        "type": "string",
                        "description": "Enough to act on alone, with acceptance criteria.",
                    },
                    "priority": {
                        "type": ["integer", "string"],
                        "description": "1 (most urgent) to 5.",
                    },
                    "dependsOn": {
                        **_STR_LIST,
                        "description": "Keys of the tasks that must be merged first.",
                    },
                },
            },
        },
    },
}


# Loose for the same reason as propose_plan's: ReviewSubmission names every problem at once.
_SUBMIT_REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {
            "type": "string",
            "description": "approve, or request_changes when the change must be fixed first.",
        },
        "summary": {"type": "string", "description": "Your overall judgement, briefly."},
        "comments": {
            "type": ["array", "string"],
            "description": "Comments anchored to the change: path (relative to the repository "
            "root), line (in the file's new version) and body (what to change and why).",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "line": {"type": ["integer", "string", "null"]},
                    "body": {"type": "string"},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class ToolReply:
    """What a callback answers to the model: the tool result's text, and whether it is an
    error the model should act on."""

    text: str
    is_error: bool = False


def _as_list(value: Any) -> list[str]:
    # Models sometimes send one string where a list is asked for; accept both.
    if value is None:
        return []
    if isinstance(value, str):
        return [line.strip("-* ").strip() for line in value.splitlines() if line.strip()]
    return [str(v) for v in value]


async def _call(callback: Callable[..., MaybeAwaitable[T]], *args: Any) -> T:
    result = callback(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def _text(message: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "is_error": error}


@dataclass
class StoneforgeTools:
    """Callbacks behind the `stoneforge` MCP tools, plus a record of every call."""

    on_complete: Callable[[str], MaybeAwaitable[None]] | None = None
    on_handoff: Callable[[HandoffNote], MaybeAwaitable[None]] | None = None
    on_ask_director: Callable[[str], MaybeAwaitable[str]] | None = None
    #: Validates a proposed plan (the tool's raw arguments) and says what was wrong, if anything.
    on_propose_plan: Callable[[dict[str, Any]], MaybeAwaitable[ToolReply]] | None = None
    #: Takes a well-formed review; may still refuse it (a comment on a file the change does not
    #: touch) with an error reply the model can act on.
    on_submit_review: Callable[[ReviewSubmission], MaybeAwaitable[ToolReply | None]] | None = None
    enabled: tuple[str, ...] = ALL_TOOLS
    calls: list[ToolCallRecord] = field(default_factory=list)

    @property
    def tool_names(self) -> list[str]:
        """Fully qualified names, as used in allowed_tools."""
        return [mcp_tool_name(n) for n in self.enabled]

    def calls_to(self, name: str) -> list[ToolCallRecord]:
        return [c for c in self.calls if c.tool == name]

    def _record(self, name: str, args: dict[str, Any]) -> None:
        self.calls.append(ToolCallRecord(name, dict(args), time.time()))

    async def complete_task(self, args: dict[str, Any]) -> dict[str, Any]:
        self._record(COMPLETE_TASK, args)
        if self.on_complete is not None:
            await _call(self.on_complete, str(args.get("summary", "")))
        return _text("Recorded. Make sure all your work is committed on your branch; then stop.")

    async def handoff(self, args: dict[str, Any]) -> dict[str, Any]:
        self._record(HANDOFF, args)
        note = HandoffNote(
            done=str(args.get("done", "")),
            remaining=str(args.get("remaining", "")),
            filesTouched=_as_list(args.get("filesTouched")),
            decisions=_as_list(args.get("decisions")),
            failingTests=_as_list(args.get("failingTests")),
            nextStep=str(args.get("nextStep", "")),
        )
        if self.on_handoff is not None:
            await _call(self.on_handoff, note)
        return _text("Handoff recorded. Commit your work and stop; a fresh session continues.")

    async def ask_director(self, args: dict[str, Any]) -> dict[str, Any]:
        self._record(ASK_DIRECTOR, args)
        question = str(args.get("question", ""))
        if self.on_ask_director is None:
            return _text(DEFAULT_DIRECTOR_ANSWER)
        answer = await _call(self.on_ask_director, question)
        return _text(answer or DEFAULT_DIRECTOR_ANSWER)

    async def propose_plan(self, args: dict[str, Any]) -> dict[str, Any]:
        self._record(PROPOSE_PLAN, args)
        if self.on_propose_plan is None:
            return _text("Recorded.")
        reply = await _call(self.on_propose_plan, dict(args))
        return _text(reply.text, error=reply.is_error)

    async def submit_review(self, args: dict[str, Any]) -> dict[str, Any]:
        self._record(SUBMIT_REVIEW, args)
        try:
            review = ReviewSubmission.model_validate(args)
            problems = review.problems()
        except ValidationError as exc:
            problems = review_submission_errors(exc)
        if problems:
            return _text(
                "The review was not recorded:\n- " + "\n- ".join(problems) + "\nCall "
                "submit_review again with verdict (approve | request_changes), summary, and "
                "comments [{path, line, body}].",
                error=True,
            )
        if self.on_submit_review is not None:
            reply = await _call(self.on_submit_review, review)
            if reply is not None and reply.is_error:
                return _text(reply.text, error=True)
        return _text(f"Review recorded ({review.verdict}). You are done: stop now.")

    def _tools(self) -> Iterable[SdkMcpTool[Any]]:
        specs = {
            COMPLETE_TASK: (
                "Report that the task is done, with a short summary of the change. "
                "Commit your work first.",
                {"summary": str},
                self.complete_task,
            ),
            HANDOFF: (
                "Hand the task to a fresh session: what is done, what remains, files "
                "touched, decisions, failing tests and the next step.",
                _HANDOFF_SCHEMA,
                self.handoff,
            ),
            ASK_DIRECTOR: (
                "Ask the director (who planned the work) a question and get an answer.",
                {"question": str},
                self.ask_director,
            ),
            PROPOSE_PLAN: (
                "Propose the plan for the goal: every task with a unique key, a one-line "
                "title, a description with acceptance criteria, a priority from 1 (most "
                "urgent) to 5, and dependsOn (keys of tasks that must be merged first). "
                "The reply says whether the plan was accepted or what to fix.",
                _PROPOSE_PLAN_SCHEMA,
                self.propose_plan,
            ),
            SUBMIT_REVIEW: (
                "Submit your review of the change: verdict approve or request_changes, a "
                "summary, and comments anchored to file and line (path, line, body). "
                "request_changes needs at least one comment. The reply says whether it was "
                "recorded or what to fix.",
                _SUBMIT_REVIEW_SCHEMA,
                self.submit_review,
            ),
        }
        from claude_agent_sdk import tool

        for name in self.enabled:
            description, schema, handler = specs[name]
            yield tool(name, description, schema)(handler)

    def server(self) -> McpSdkServerConfig:
        from claude_agent_sdk import create_sdk_mcp_server

        return create_sdk_mcp_server(SERVER_NAME, version="1.0.0", tools=list(self._tools()))
