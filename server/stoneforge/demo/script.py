"""What the scripted model says, turn by turn.

A :class:`Script` is a list of :class:`Step` s for one agent session; the fake endpoint
picks the script from the request (working directory or a marker in the first user
message) and answers each main-conversation request with the next step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stoneforge.demo.recording import RecordedRequest

MCP_PREFIX = "mcp__"


@dataclass(frozen=True)
class Usage:
    """Token counts the endpoint reports for one model turn (Messages API `usage`)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def to_api(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
        }

    @property
    def context_tokens(self) -> int:
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


@dataclass(frozen=True)
class ToolCall:
    """One `tool_use` block: built-in tools (Bash, Write, ...) or `mcp__server__tool`."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Step:
    """One answer of the model.

    `text` and `tool_calls` make the content (text first). `usage` is reported as is;
    when absent the endpoint estimates it from the request size. `delay_s` waits before
    answering, `error_status` answers with an API error instead, `hang` never answers and
    `stall_mid_stream` starts streaming and then goes silent.
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    usage: Usage | None = None
    delay_s: float = 0.0
    error_status: int | None = None
    error_message: str | None = None
    hang: bool = False
    stall_mid_stream: bool = False
    stop_reason: str | None = None

    @property
    def mcp_tools(self) -> list[str]:
        return [c.name for c in self.tool_calls if c.name.startswith(MCP_PREFIX)]

    # Shorthands keep test scripts readable.
    @classmethod
    def say(cls, text: str, **kw: Any) -> Step:
        return cls(text=text, **kw)

    @classmethod
    def bash(cls, command: str, *, text: str | None = None, **kw: Any) -> Step:
        call = ToolCall("Bash", {"command": command, "description": "Run a command"})
        return cls(text=text, tool_calls=(call,), **kw)

    @classmethod
    def write(cls, file_path: str, content: str, *, text: str | None = None, **kw: Any) -> Step:
        call = ToolCall("Write", {"file_path": file_path, "content": content})
        return cls(text=text, tool_calls=(call,), **kw)

    @classmethod
    def tool(cls, name: str, *, text: str | None = None, **tool_input: Any) -> Step:
        return cls(text=text, tool_calls=(ToolCall(name, tool_input),))

    @classmethod
    def mcp(cls, tool: str, *, server: str = "stoneforge", **tool_input: Any) -> Step:
        return cls(tool_calls=(ToolCall(f"{MCP_PREFIX}{server}__{tool}", tool_input),))

    @classmethod
    def error(cls, status: int, message: str | None = None) -> Step:
        return cls(error_status=status, error_message=message)

    @classmethod
    def hang_forever(cls) -> Step:
        return cls(hang=True)


StepFactory = Callable[["RecordedRequest"], Step]
"""A step computed from the request it answers (e.g. react to a tool result)."""


@dataclass(eq=False)
class Script:
    """The steps of one session. Routing: `cwd` equals the request's working directory,
    or `marker` occurs in its first user message. After the last step the endpoint
    answers with `then` (a plain end of turn by default)."""

    steps: list[Step | StepFactory]
    cwd: str | None = None
    marker: str | None = None
    name: str = ""
    then: Step = field(default_factory=lambda: Step(text="Done."))
    cursor: int = 0
    searched_tools: set[str] = field(default_factory=set)
    pending: Step | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.cursor >= len(self.steps)
