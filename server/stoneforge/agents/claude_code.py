"""Claude Code as an agent provider, on `claude-agent-sdk` (``ClaudeSDKClient``).

One session = one CLI process in the task's working directory, driven over stream-json.
The SDK's messages are translated into :mod:`~stoneforge.agents.events`: the CLI emits
one ``AssistantMessage`` per content block, so blocks are assembled into one
:class:`AssistantTurn` per model message, with the final usage taken from the partial
stream's ``message_delta`` (the block messages only carry ``message_start``'s usage).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from stoneforge.agents.env import session_env
from stoneforge.agents.events import (
    AgentEvent,
    AssistantTurn,
    Failure,
    FailureKind,
    PermissionDenial,
    PermissionDenied,
    Result,
    SessionStarted,
    Stopped,
    TokenUsage,
    ToolResult,
    ToolUse,
)
from stoneforge.agents.mcp_tools import SERVER_NAME
from stoneforge.agents.process import kill_tree
from stoneforge.agents.provider import SessionSpec
from stoneforge.agents.secrets import Redactor, secret_values

log = logging.getLogger(__name__)

_MAX_TOOL_RESULT_CHARS = 10_000
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_STOP_GRACE_S = 5.0


def _process_of(client: ClaudeSDKClient) -> Any:
    # The SDK keeps the CLI process (an anyio Process) on its subprocess transport; the
    # attributes are private, so every use tolerates their absence.
    return getattr(getattr(client, "_transport", None), "_process", None)


def _block_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b]
    return "\n".join(parts)


class _TurnAssembler:
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


class ClaudeCodeSession:
    """A live Claude Code process; see :class:`~stoneforge.agents.provider.AgentSession`."""

    def __init__(self, spec: SessionSpec, *, cli_path: str | Path | None, partial: bool) -> None:
        self.spec = spec
        self._cli_path = cli_path
        self._partial = partial
        # The CLI inherits our environment too (a key exported in the user's shell), so
        # every secret-looking value there is redacted as well as the spec's own.
        inherited = secret_values({**os.environ, **spec.env})
        self._redactor = Redactor([s for s in (spec.api_key, *inherited) if s is not None])
        self._client: ClaudeSDKClient | None = None
        self._pid: int | None = None
        self._process: Any = None
        self._session_id: str | None = spec.resume
        self._startup_failure: Failure | None = None
        self._live: deque[AgentEvent] = deque()
        self._denied_ids: set[str] = set()
        self._stderr: deque[str] = deque(maxlen=40)
        self._pending_prompts: set[str] = set()
        self._pending_tools: set[str] = set()
        self._stop_reason: str | None = None
        self._turns = _TurnAssembler()

    # -- AgentSession --------------------------------------------------------------------

    @property
    def provider_session_id(self) -> str | None:
        return self._session_id

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr)

    async def send(self, text: str) -> None:
        if self._client is None:
            raise RuntimeError("session is not running")
        prompt_id = str(uuid.uuid4())
        message = {
            "type": "user",
            "message": {"role": "user", "content": text},
            "parent_tool_use_id": None,
            "session_id": "default",
            "uuid": prompt_id,  # the result names the prompts it answered by this id
        }
        self._pending_prompts.add(prompt_id)

        async def one() -> AsyncIterator[dict[str, Any]]:
            yield message

        await self._client.query(one())

    async def stop(self, reason: str = "stopped") -> None:
        if self._stop_reason is not None or self._client is None:
            return
        self._stop_reason = reason
        interrupted = False
        with anyio.move_on_after(_STOP_GRACE_S), contextlib.suppress(Exception):
            # An interrupt lets the CLI end the turn and save its transcript (resumable).
            await self._client.interrupt()
            interrupted = True
        if not interrupted:
            self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        # Only while our child still runs: a reaped pid may already belong to another
        # process. (Children of a CLI that died on its own were re-parented; the caller
        # can reap them from the pid it stored.)
        if self._pid is not None and getattr(self._process, "returncode", None) is None:
            kill_tree(self._pid, sig)

    # -- lifecycle -----------------------------------------------------------------------

    def _options(self) -> ClaudeAgentOptions:
        spec = self.spec
        spec.config_dir.mkdir(parents=True, exist_ok=True)
        env = session_env(
            config_dir=spec.config_dir,
            api_key=spec.api_key,
            base_url=spec.base_url,
            extra=spec.env,
        )
        hooks = None
        if spec.bash_policy is not None:
            hooks = {"PreToolUse": [HookMatcher(matcher="Bash", hooks=[self._bash_hook])]}
        system_prompt: Any = {"type": "preset", "preset": "claude_code"}
        if spec.system_prompt:
            system_prompt["append"] = spec.system_prompt
        return ClaudeAgentOptions(
            cwd=str(spec.cwd),
            cli_path=self._cli_path,
            model=spec.model,
            system_prompt=system_prompt,
            tools=list(spec.tools) if spec.tools is not None else None,
            allowed_tools=list(spec.allowed_tools),
            disallowed_tools=list(spec.disallowed_tools),
            # No can_use_tool: a call the CLI would ask a human about (an edit outside
            # the working directory, a tool outside allowed_tools) is refused by the CLI
            # itself, which reports it as a permission_denied message.
            permission_mode="acceptEdits",
            hooks=hooks,  # type: ignore[arg-type]
            mcp_servers={SERVER_NAME: spec.mcp.server()} if spec.mcp is not None else {},
            strict_mcp_config=True,
            setting_sources=list(spec.setting_sources),  # type: ignore[arg-type]
            env=env,
            resume=spec.resume,
            max_turns=spec.max_turns,
            include_partial_messages=self._partial,
            stderr=self._on_stderr,
        )

    async def __aenter__(self) -> ClaudeCodeSession:
        try:
            self._client = ClaudeSDKClient(self._options())
            await self._client.connect()
            self._process = _process_of(self._client)
            pid = getattr(self._process, "pid", None)
            self._pid = pid if isinstance(pid, int) else None
            await self.send(self.spec.prompt)
        except Exception as exc:  # any startup problem becomes a Failure event
            await anyio.sleep(0.05)  # let the stderr reader catch the CLI's last words
            tail = " | ".join(self._stderr)
            message = self._redactor.text(
                f"{type(exc).__name__}: {exc}" + (f" | stderr: {tail}" if tail else "")
            )
            log.warning("agent session failed to start: %s", message)
            self._startup_failure = Failure(
                kind=FailureKind.STARTUP, message=message, retryable=False
            )
            await self._disconnect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._disconnect()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await client.disconnect()
            except Exception:
                log.debug("disconnect failed", exc_info=True)
                self.kill()

    # -- permissions ---------------------------------------------------------------------

    def _deny(
        self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None, reason: str
    ) -> None:
        denial = PermissionDenial(
            tool_name=tool_name,
            tool_use_id=tool_use_id,
            tool_input=self._redactor.obj(tool_input),
            reason=reason,
        )
        if tool_use_id:
            self._denied_ids.add(tool_use_id)
        log.info("denied %s for agent in %s: %s", tool_name, self.spec.cwd, reason)
        self._live.append(PermissionDenied(denial=denial))

    async def _bash_hook(
        self, hook_input: Any, tool_use_id: str | None, context: Any
    ) -> dict[str, Any]:
        policy = self.spec.bash_policy
        tool_input = dict(hook_input.get("tool_input") or {})
        reason = policy.check(str(tool_input.get("command", ""))) if policy else None
        if reason is None:
            return {}
        self._deny("Bash", tool_input, tool_use_id, reason)
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            }
        }

    def _on_stderr(self, line: str) -> None:
        line = self._redactor.text(line)
        self._stderr.append(line)
        log.debug("claude stderr: %s", line)

    # -- events --------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[AgentEvent]:
        if self._startup_failure is not None or self._client is None:
            yield self._startup_failure or Failure(
                kind=FailureKind.STARTUP, message="session is not running", retryable=False
            )
            return
        messages = self._client.receive_messages().__aiter__()
        while True:
            timeout = self.spec.tool_timeout_s if self._pending_tools else self.spec.idle_timeout_s
            message: Any = None
            error: BaseException | None = None
            ended = False
            with anyio.move_on_after(math.inf if timeout is None else timeout) as scope:
                try:
                    message = await messages.__anext__()
                except StopAsyncIteration:
                    ended = True
                except Exception as exc:  # ProcessError, CLIConnectionError, ...
                    error = exc
            while self._live:
                yield self._live.popleft()
            if scope.cancelled_caught:
                for event in self._end_hung(timeout or 0.0):
                    yield event
                return
            if ended or error is not None:
                for event in self._end_without_result(error):
                    yield event
                return
            finished = False
            for event in self._translate(message):
                yield event
                finished = finished or isinstance(event, Result | Failure)
            while self._live:
                yield self._live.popleft()
            if finished and not self._pending_prompts:
                return

    def _end_hung(self, timeout: float) -> Iterator[AgentEvent]:
        if (turn := self._turns.flush()) is not None:
            yield turn
        if self._stop_reason is not None:
            yield Stopped(reason=self._stop_reason)
            return
        self.kill()
        log.warning(
            "agent in %s sent nothing for %gs; killed pid %s", self.spec.cwd, timeout, self._pid
        )
        yield Failure(
            kind=FailureKind.HUNG,
            message=f"no events for {timeout:g}s; the process was killed",
            retryable=True,
        )

    def _end_without_result(self, error: BaseException | None) -> Iterator[AgentEvent]:
        if (turn := self._turns.flush()) is not None:
            yield turn
        if self._stop_reason is not None:
            yield Stopped(reason=self._stop_reason)
            return
        exit_code = getattr(error, "exit_code", None)
        detail = f"exit code {exit_code}" if exit_code is not None else str(error or "EOF")
        tail = " | ".join(self._stderr)
        message = f"Claude Code ended without a result ({detail})" + (f": {tail}" if tail else "")
        yield Failure(
            kind=FailureKind.CRASHED,
            message=self._redactor.text(message),
            exit_code=exit_code if isinstance(exit_code, int) else None,
            retryable=True,
        )

    def _translate(self, message: Any) -> Iterator[AgentEvent]:
        if isinstance(message, StreamEvent):
            yield from self._on_stream_event(message)
        elif isinstance(message, AssistantMessage):
            # Sub-agent turns are not this context; synthetic ones are the CLI's own
            # error notes with zero usage, which would reset the context size.
            main = message.parent_tool_use_id is None and message.model != "<synthetic>"
            if main and (turn := self._turns.add(message, self._redactor)) is not None:
                yield from self._emit_turn(turn)
        elif isinstance(message, UserMessage):
            yield from self._emit_pending_turn()
            yield from self._on_user_message(message)
        elif isinstance(message, ResultMessage):
            yield from self._emit_pending_turn()
            yield from self._on_result(message)
        elif isinstance(message, SystemMessage):
            yield from self._on_system(message)

    def _emit_turn(self, turn: AssistantTurn) -> Iterator[AgentEvent]:
        self._pending_tools.update(t.id for t in turn.tool_uses)
        yield turn

    def _emit_pending_turn(self) -> Iterator[AgentEvent]:
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
            yield from self._emit_pending_turn()

    def _on_user_message(self, message: UserMessage) -> Iterator[AgentEvent]:
        if message.parent_tool_use_id is not None or isinstance(message.content, str):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                self._pending_tools.discard(block.tool_use_id)
                text = self._redactor.text(_block_text(block.content))
                yield ToolResult(
                    tool_use_id=block.tool_use_id,
                    is_error=bool(block.is_error),
                    content=text[:_MAX_TOOL_RESULT_CHARS],
                )

    def _on_system(self, message: SystemMessage) -> Iterator[AgentEvent]:
        data = message.data
        if message.subtype == "init":
            self._session_id = str(data.get("session_id") or self._session_id or "")
            yield SessionStarted(
                provider_session_id=self._session_id,
                pid=self._pid,
                model=data.get("model"),
                cwd=data.get("cwd"),
                tools=list(data.get("tools") or []),
            )
        elif message.subtype == "permission_denied":
            tool_use_id = data.get("tool_use_id")
            if tool_use_id not in self._denied_ids:
                self._denied_ids.add(str(tool_use_id))
                yield PermissionDenied(
                    denial=PermissionDenial(
                        tool_name=str(data.get("tool_name", "")),
                        tool_use_id=tool_use_id,
                        reason=self._redactor.text(str(data.get("message", ""))),
                    )
                )

    def _on_result(self, message: ResultMessage) -> Iterator[AgentEvent]:
        self._session_id = message.session_id or self._session_id
        answered = {u for u in (message.user_message_uuids or []) if u}
        if message.user_message_uuid:
            answered.add(message.user_message_uuid)
        # Without ids (older CLIs) a result is taken to answer everything sent so far.
        self._pending_prompts -= answered if answered else set(self._pending_prompts)
        denials = [
            PermissionDenial(
                tool_name=str(d.get("tool_name", "")),
                tool_use_id=d.get("tool_use_id"),
                tool_input=self._redactor.obj(d.get("tool_input") or {}),
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
            text=self._redactor.text(message.result) if message.result else None,
            permission_denials=denials,
            api_error_status=message.api_error_status,
            terminal_reason=message.terminal_reason,
            errors=[self._redactor.text(e) for e in message.errors or []],
            duration_ms=message.duration_ms,
        )
        yield result
        if self._stop_reason is not None:
            self._pending_prompts.clear()
            yield Stopped(reason=self._stop_reason)
        elif (failure := classify_result(result)) is not None:
            self._pending_prompts.clear()  # an error ends the run
            yield failure


class ClaudeCodeProvider:
    """Runs agents with the Claude Code CLI (the SDK's bundled one unless `cli_path`)."""

    name = "claude-code"

    def __init__(self, cli_path: str | Path | None = None, *, partial_messages: bool = True):
        self.cli_path = cli_path
        # Partial messages give the final per-turn usage and keep a long answer from
        # looking idle; they cost one small JSON line per streamed delta.
        self.partial_messages = partial_messages

    def open(self, spec: SessionSpec) -> ClaudeCodeSession:
        return ClaudeCodeSession(spec, cli_path=self.cli_path, partial=self.partial_messages)
