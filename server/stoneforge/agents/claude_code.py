"""Claude Code as an agent provider, on `claude-agent-sdk` (``ClaudeSDKClient``).

One session = one CLI process in the task's working directory, driven over stream-json:
start it with the role's options, guard Bash with the policy hook, stream its messages
(translated by :mod:`~stoneforge.agents.claude_messages`) under an idle timeout, and end
it by result, stop, kill or crash.
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
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
)

from stoneforge.agents.claude_login import resolve_credential
from stoneforge.agents.claude_messages import MessageTranslator, classify_result
from stoneforge.agents.claude_setup import prepare
from stoneforge.agents.command_prefix import write_prefix
from stoneforge.agents.doctor import resolve_cli
from stoneforge.agents.env import session_env
from stoneforge.agents.events import (
    AgentEvent,
    Failure,
    FailureKind,
    PermissionDenial,
    PermissionDenied,
    Result,
    Stopped,
)
from stoneforge.agents.mcp_tools import SERVER_NAME
from stoneforge.agents.process import is_alive, kill_tree
from stoneforge.agents.provider import SessionSpec
from stoneforge.agents.sandbox import (
    SandboxMode,
    SandboxPolicy,
    SandboxStatus,
    resolve,
    write_wrapper,
)
from stoneforge.redact import Redactor, secret_values

log = logging.getLogger(__name__)

_MAX_TOOL_RESULT_CHARS = 10_000
_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504, 529}
_STOP_GRACE_S = 5.0


def _process_of(client: ClaudeSDKClient) -> Any:
    # The SDK keeps the CLI process (an anyio Process) on its subprocess transport; the
    # attributes are private, so every use tolerates their absence.
    return getattr(getattr(client, "_transport", None), "_process", None)


class ClaudeCodeSession:
    """A live Claude Code process; see :class:`~stoneforge.agents.provider.AgentSession`."""

    def __init__(
        self,
        spec: SessionSpec,
        *,
        cli_path: str | Path | None,
        partial: bool,
        contained: bool = False,
    ) -> None:
        self.spec = spec
        self._cli_path = cli_path
        self._partial = partial
        self._contained = contained
        # The CLI inherits our environment too (a key exported in the user's shell), so
        # every secret-looking value there is redacted as well as the spec's own.
        inherited = secret_values({**os.environ, **spec.env})
        self._redactor = Redactor([s for s in (spec.api_key, *inherited) if s is not None])
        self._client: ClaudeSDKClient | None = None
        self._pid: int | None = None
        self._process: Any = None
        self._startup_failure: Failure | None = None
        self._live: deque[AgentEvent] = deque()
        self._stderr: deque[str] = deque(maxlen=40)
        self._pending_prompts: set[str] = set()
        self._stop_reason: str | None = None
        self._messages = MessageTranslator(self._redactor, spec.resume)

    # -- AgentSession --------------------------------------------------------------------

    @property
    def provider_session_id(self) -> str | None:
        return self._messages.session_id

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
        if self._pid is not None and not is_alive(self._pid):
            return  # it died already (a Ctrl-C reaches the whole process group): no interrupt
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
        # The user's own environment (not the session's CLAUDE_CONFIG_DIR) locates their set-up.
        user_env = {**os.environ, **spec.env}
        mcp_servers: dict[str, Any] = {SERVER_NAME: spec.mcp.server()} if spec.mcp else {}
        setting_sources = list(spec.setting_sources)
        inherited: dict[str, str] = {}
        if spec.claude_setup is not None:
            prepared = prepare(
                spec.claude_setup, cwd=spec.cwd, config_dir=spec.config_dir, env=user_env
            )
            inherited = prepared.env
            mcp_servers = {**prepared.mcp_servers, **mcp_servers}
            # Only the file written into this session's own config dir (see claude_setup).
            setting_sources = ["user"]
            for secret in prepared.secrets:
                self._redactor.add(secret)
        if spec.api_key is None:
            credential = resolve_credential({**user_env, **inherited}, base_url=spec.base_url)
            for name, value in credential.secret_env().items():
                inherited[name] = value
                self._redactor.add(value)
        # Ours win over the settings' env: the config dir, the endpoint, the quiet switches.
        env = {
            **inherited,
            **session_env(
                config_dir=spec.config_dir,
                api_key=spec.api_key,
                base_url=spec.base_url,
                extra=spec.env,
            ),
        }
        cli_path = self._cli_path
        if self._contained:
            cli_path = self._sandboxed_cli(env)
        else:
            # Every command the CLI starts (Bash, hooks, stdio MCP servers) goes without
            # credentials, contained or not.
            prefix = spec.config_dir.with_name(spec.config_dir.name + ".shell.sh")
            env["CLAUDE_CODE_SHELL_PREFIX"] = str(write_prefix(prefix))
        hooks = None
        if spec.bash_policy is not None:
            hooks = {"PreToolUse": [HookMatcher(matcher="Bash", hooks=[self._bash_hook])]}
        system_prompt: Any = {"type": "preset", "preset": "claude_code"}
        if spec.system_prompt:
            system_prompt["append"] = spec.system_prompt
        return ClaudeAgentOptions(
            cwd=str(spec.cwd),
            cli_path=cli_path,
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
            mcp_servers=mcp_servers,
            strict_mcp_config=True,
            setting_sources=setting_sources,  # type: ignore[arg-type]
            env=env,
            resume=spec.resume,
            max_turns=spec.max_turns,
            include_partial_messages=self._partial,
            stderr=self._on_stderr,
        )

    def _sandboxed_cli(self, env: dict[str, str]) -> Path:
        """The wrapper script that starts the CLI inside this session's sandbox."""
        spec = self.spec
        cli = resolve_cli(self._cli_path)
        if cli is None:
            raise FileNotFoundError("no Claude Code CLI found (the claude-agent-sdk bundles one)")
        policy = SandboxPolicy.for_session(
            spec.cwd, spec.config_dir, spec.repo_root, read_only=spec.read_only
        )
        wrapper = spec.config_dir.with_name(spec.config_dir.name + ".sandbox.sh")
        script, extra = write_wrapper(wrapper, cli, policy, spec.cwd, {**os.environ, **env})
        env.update(extra)
        return script

    async def __aenter__(self) -> ClaudeCodeSession:
        try:
            self._client = ClaudeSDKClient(self._options())
            await self._client.connect()
            self._process = _process_of(self._client)
            pid = getattr(self._process, "pid", None)
            self._pid = pid if isinstance(pid, int) else None
            self._messages.pid = self._pid
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
        except BaseException:  # cancelled while starting: the CLI must not outlive its session
            await self._disconnect()
            raise
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
            self._messages.denied_ids.add(tool_use_id)
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
            timeout = (
                self.spec.tool_timeout_s
                if self._messages.pending_tools
                else self.spec.idle_timeout_s
            )
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
            for event in self._messages.translate(message):
                yield event
                if isinstance(event, Result):
                    finished = True
                    for after in self._after_result(event):
                        yield after
            while self._live:
                yield self._live.popleft()
            if finished and not self._pending_prompts:
                return

    def _after_result(self, result: Result) -> Iterator[AgentEvent]:
        """Settle the prompts a result answered; a stop or an error ends the run."""
        answered = self._messages.answered
        # Without prompt ids (older CLIs) a result answers everything sent so far.
        self._pending_prompts -= answered if answered else set(self._pending_prompts)
        if self._stop_reason is not None:
            self._pending_prompts.clear()
            yield Stopped(reason=self._stop_reason)
        elif (failure := classify_result(result)) is not None:
            self._pending_prompts.clear()
            yield failure

    def _end_hung(self, timeout: float) -> Iterator[AgentEvent]:
        yield from self._messages.flush()
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
        yield from self._messages.flush()
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


class ClaudeCodeProvider:
    """Runs agents with the Claude Code CLI (the SDK's bundled one unless `cli_path`).

    `sandbox` is `agents.sandbox`: `auto` contains every session with bubblewrap when it works
    here, `required` raises `SandboxUnavailable` at once when it does not, `off` never contains.
    """

    name = "claude-code"

    def __init__(
        self,
        cli_path: str | Path | None = None,
        *,
        partial_messages: bool = True,
        sandbox: SandboxMode = "auto",
    ):
        self.cli_path = cli_path
        # Partial messages give the final per-turn usage and keep a long answer from
        # looking idle; they cost one small JSON line per streamed delta.
        self.partial_messages = partial_messages
        self.sandbox: SandboxStatus = resolve(sandbox)
        if self.sandbox.warning:
            log.warning("%s", self.sandbox.warning)

    def open(self, spec: SessionSpec) -> ClaudeCodeSession:
        return ClaudeCodeSession(
            spec,
            cli_path=self.cli_path,
            partial=self.partial_messages,
            contained=self.sandbox.contained,
        )
