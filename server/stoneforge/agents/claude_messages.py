"""Claude Code's stream-json messages (as parsed by the SDK) turned into agent events.

The CLI emits one ``AssistantMessage`` per content block, all with the message's id and
``message_start``'s usage; the partial stream's ``message_delta`` carries the final usage.
:class:`TurnAssembler` joins them into one :class:`AssistantTurn` per model message.
Everything text-like passes the session's :class:`Redactor` on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from stoneforge.agents.events import (
    AgentEvent,
    ApiRetry,
    AssistantTurn,
    Failure,
    FailureKind,
    PermissionDenial,
    PermissionDenied,
    Result,
    SessionStarted,
    TokenUsage,
    ToolResult,
    ToolUse,
)
from stoneforge.redact import Redactor

_MAX_TOOL_RESULT_CHARS = 10_000
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}


def _block_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b]
    return "\n".join(parts)


class TurnAssembler:
    """Collects the per-block messages and stream usage of one model message."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.message_id: str | None = None
        self._texts: list[str] = []
        self._tools: list[ToolUse] = []
        self._usage: dict[str, Any] = {}

    def start(self, message_id: str, usage: dict[str, Any] | None) -> AssistantTurn | None:
        done = self.flush() if self.message_id != message_id else None
        self.message_id = message_id
        self._usage.update({k: v for k, v in (usage or {}).items() if v is not None})
        return done

    def update_usage(self, usage: dict[str, Any] | None) -> None:
        self._usage.update({k: v for k, v in (usage or {}).items() if v is not None})

    def add(self, msg: AssistantMessage, redactor: Redactor) -> AssistantTurn | None:
        message_id = msg.message_id or msg.uuid or ""
        done = self.flush() if self.message_id not in (None, message_id) else None
        if self.message_id is None:
            self.message_id = message_id
            self.update_usage(msg.usage)
        for block in msg.content:
            if isinstance(block, TextBlock):
                self._texts.append(redactor.text(block.text))
            elif isinstance(block, ToolUseBlock):
                self._tools.append(
                    ToolUse(id=block.id, name=block.name, input=redactor.obj(block.input))
                )
        return done

    def flush(self) -> AssistantTurn | None:
        if self.message_id is None:
            return None
        turn = AssistantTurn(
            message_id=self.message_id,
            text="\n".join(t for t in self._texts if t),
            tool_uses=self._tools,
            usage=TokenUsage.from_api(self._usage),
        )
        self._reset()
        return turn


def classify_result(result: Result) -> Failure | None:
    """The failure an error result stands for, or None for a successful run."""
    if not result.is_error:
        return None
    message = "; ".join(result.errors) or result.text or result.subtype
    if result.subtype == "error_max_turns" or result.terminal_reason == "max_turns":
        return Failure(kind=FailureKind.MAX_TURNS, message=message, retryable=True)
    status = result.api_error_status
    if status is not None or result.terminal_reason == "api_error":
        retryable = status is None or status in _RETRYABLE_STATUS or status >= 500
        return Failure(
            kind=FailureKind.API_ERROR, message=message, status=status, retryable=retryable
        )
    return Failure(kind=FailureKind.ERROR, message=message, retryable=True)


class MessageTranslator:
    """Stateful translation of one session's SDK messages (no I/O).

    Tracks the provider session id, the tool calls still awaiting a result (the session
    applies its tool timeout while there are any), the denials already reported, and
    the prompt ids the last result answered.
    """

    def __init__(self, redactor: Redactor, session_id: str | None = None) -> None:
        self.redactor = redactor
        self.session_id = session_id
        self.pid: int | None = None
        self.pending_tools: set[str] = set()
        self.denied_ids: set[str] = set()
        self.answered: set[str] = set()
        self._turns = TurnAssembler()

    def translate(self, message: Any) -> Iterator[AgentEvent]:
        if isinstance(message, StreamEvent):
            yield from self._on_stream_event(message)
        elif isinstance(message, AssistantMessage):
            # Sub-agent turns are not this context; synthetic ones are the CLI's own
            # error notes with zero usage, which would reset the context size.
            main = message.parent_tool_use_id is None and message.model != "<synthetic>"
            if main and (turn := self._turns.add(message, self.redactor)) is not None:
                yield from self._emit_turn(turn)
        elif isinstance(message, UserMessage):
            yield from self.flush()
            yield from self._on_user_message(message)
        elif isinstance(message, ResultMessage):
            yield from self.flush()
            yield from self._on_result(message)
        elif isinstance(message, SystemMessage):
            yield from self._on_system(message)

    def _emit_turn(self, turn: AssistantTurn) -> Iterator[AgentEvent]:
        self.pending_tools.update(t.id for t in turn.tool_uses)
        yield turn

    def flush(self) -> Iterator[AgentEvent]:
        """The turn still being assembled, if any (the stream ended under it)."""
        if (turn := self._turns.flush()) is not None:
            yield from self._emit_turn(turn)

    def _on_stream_event(self, message: StreamEvent) -> Iterator[AgentEvent]:
        if message.parent_tool_use_id is not None:
            return
        event = message.event
        kind = event.get("type")
        if kind == "message_start":
            body = event.get("message") or {}
            if (turn := self._turns.start(str(body.get("id", "")), body.get("usage"))) is not None:
                yield from self._emit_turn(turn)
        elif kind == "message_delta":
            self._turns.update_usage(event.get("usage"))
        elif kind == "message_stop":
            yield from self.flush()

    def _on_user_message(self, message: UserMessage) -> Iterator[AgentEvent]:
        if message.parent_tool_use_id is not None or isinstance(message.content, str):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                self.pending_tools.discard(block.tool_use_id)
                text = self.redactor.text(_block_text(block.content))
                yield ToolResult(
                    tool_use_id=block.tool_use_id,
                    is_error=bool(block.is_error),
                    content=text[:_MAX_TOOL_RESULT_CHARS],
                )

    def _on_system(self, message: SystemMessage) -> Iterator[AgentEvent]:
        data = message.data
        if message.subtype == "init":
            self.session_id = str(data.get("session_id") or self.session_id or "")
            yield SessionStarted(
                provider_session_id=self.session_id,
                pid=self.pid,
                model=data.get("model"),
                cwd=data.get("cwd"),
                tools=list(data.get("tools") or []),
            )
        elif message.subtype == "api_retry":
            delay_ms = data.get("retry_delay_ms")
            status = data.get("error_status")
            yield ApiRetry(
                attempt=int(data.get("attempt") or 0),
                max_retries=int(data.get("max_retries") or 0),
                delay_s=delay_ms / 1000 if isinstance(delay_ms, int | float) else None,
                status=status if isinstance(status, int) else None,
                error=self.redactor.text(str(data.get("error") or "")),
            )
        elif message.subtype == "permission_denied":
            tool_use_id = data.get("tool_use_id")
            if tool_use_id not in self.denied_ids:
                self.denied_ids.add(str(tool_use_id))
                yield PermissionDenied(
                    denial=PermissionDenial(
                        tool_name=str(data.get("tool_name", "")),
                        tool_use_id=tool_use_id,
                        reason=self.redactor.text(str(data.get("message", ""))),
                    )
                )

    def _on_result(self, message: ResultMessage) -> Iterator[AgentEvent]:
        self.session_id = message.session_id or self.session_id
        answered = {u for u in (message.user_message_uuids or []) if u}
        if message.user_message_uuid:
            answered.add(message.user_message_uuid)
        self.answered = answered
        denials = [
            PermissionDenial(
                tool_name=str(d.get("tool_name", "")),
                tool_use_id=d.get("tool_use_id"),
                tool_input=self.redactor.obj(d.get("tool_input") or {}),
            )
            for d in (message.permission_denials or [])
            if isinstance(d, dict)
        ]
        result = Result(
            provider_session_id=message.session_id,
            is_error=message.is_error,
            subtype=message.subtype,
            num_turns=message.num_turns,
            total_cost_usd=message.total_cost_usd,
            usage=TokenUsage.from_api(message.usage),
            text=self.redactor.text(message.result) if message.result else None,
            permission_denials=denials,
            api_error_status=message.api_error_status,
            terminal_reason=message.terminal_reason,
            errors=[self.redactor.text(e) for e in message.errors or []],
            duration_ms=message.duration_ms,
        )
        yield result
