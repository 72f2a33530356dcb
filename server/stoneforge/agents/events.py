"""Typed events a provider session streams, independent of any provider SDK.

Every event is a pydantic model with an ``event`` discriminator, so a caller can store
them in the event log as JSON (``model_dump(mode="json")``) and read them back with
:data:`AGENT_EVENT_ADAPTER`. Text in events has already passed secret redaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter


class TokenUsage(BaseModel):
    """Token counts of one model turn (or of a whole run, on a Result)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def context_tokens(self) -> int:
        """Size of the prompt the model saw: the number the handoff threshold watches."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> TokenUsage:
        usage = usage or {}

        def num(key: str) -> int:
            value = usage.get(key)
            return int(value) if isinstance(value, int | float) else 0

        return cls(
            input_tokens=num("input_tokens"),
            output_tokens=num("output_tokens"),
            cache_read_input_tokens=num("cache_read_input_tokens"),
            cache_creation_input_tokens=num("cache_creation_input_tokens"),
        )


class ToolUse(BaseModel):
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class PermissionDenial(BaseModel):
    tool_name: str
    tool_use_id: str | None = None
    tool_input: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None


class FailureKind(StrEnum):
    CRASHED = "crashed"  # the process ended without a result
    API_ERROR = "api_error"  # the model API answered with an error status
    MAX_TURNS = "max_turns"
    HUNG = "hung"  # no events for the idle timeout; the process was killed
    STARTUP = "startup"  # the CLI could not be started or initialised
    ERROR = "error"  # any other error result (budget, execution error, ...)


class SessionStarted(BaseModel):
    event: Literal["session_started"] = "session_started"
    provider_session_id: str
    pid: int | None = None
    model: str | None = None
    cwd: str | None = None
    tools: list[str] = Field(default_factory=list)


class AssistantTurn(BaseModel):
    """One complete model message: its text, tool calls and usage."""

    event: Literal["assistant_turn"] = "assistant_turn"
    message_id: str
    text: str = ""
    tool_uses: list[ToolUse] = Field(default_factory=list)
    usage: TokenUsage = Field(default_factory=TokenUsage)

    @property
    def context_tokens(self) -> int:
        return self.usage.context_tokens


class ToolResult(BaseModel):
    event: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    is_error: bool = False
    content: str = ""


class PermissionDenied(BaseModel):
    """A tool call refused live (our guard or the CLI's deny rules)."""

    event: Literal["permission_denied"] = "permission_denied"
    denial: PermissionDenial


class Result(BaseModel):
    """The CLI's own end-of-run record."""

    event: Literal["result"] = "result"
    provider_session_id: str
    is_error: bool
    subtype: str
    num_turns: int = 0
    total_cost_usd: float | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    text: str | None = None
    permission_denials: list[PermissionDenial] = Field(default_factory=list)
    api_error_status: int | None = None
    terminal_reason: str | None = None
    errors: list[str] = Field(default_factory=list)
    duration_ms: int | None = None


class Failure(BaseModel):
    event: Literal["failure"] = "failure"
    kind: FailureKind
    message: str
    status: int | None = None  # HTTP status of an API error
    exit_code: int | None = None
    retryable: bool = True


class ApiRetry(BaseModel):
    """The CLI retries a failed model request itself (its `api_retry` system message).

    `delay_s` is how long it waits first: its own backoff, or the API's `retry-after`. The
    CLI exposes that header nowhere else, so this is what the orchestrator honours.
    """

    event: Literal["api_retry"] = "api_retry"
    attempt: int = 0
    max_retries: int = 0
    delay_s: float | None = None
    status: int | None = None
    error: str = ""


class Stopped(BaseModel):
    """The session was stopped on request (not a failure)."""

    event: Literal["stopped"] = "stopped"
    reason: str = ""


AgentEvent = Annotated[
    SessionStarted
    | AssistantTurn
    | ToolResult
    | PermissionDenied
    | Result
    | Failure
    | ApiRetry
    | Stopped,
    Field(discriminator="event"),
]
AGENT_EVENT_ADAPTER: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)
