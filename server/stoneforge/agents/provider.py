"""The provider interface: what the orchestrator needs from an agent runtime.

A provider opens a session (one agent process) from a :class:`SessionSpec`; the session
streams :mod:`~stoneforge.agents.events`, accepts extra user messages, and can be
stopped or killed. Resuming is a new session whose spec names the provider session id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from stoneforge.agents.bash_policy import BashPolicy
from stoneforge.agents.claude_setup import ClaudeSetup
from stoneforge.agents.events import AgentEvent
from stoneforge.agents.mcp_tools import StoneforgeTools


@dataclass(frozen=True)
class SessionSpec:
    """Everything needed to start (or resume) one agent session.

    `system_prompt` is the role prompt, appended to the CLI's own system prompt. `tools`
    is the set of built-in tools the model sees; `allowed_tools` run without asking and
    anything else that would ask is refused. `env` is merged over our environment for the
    agent process only; put credentials there (or in `api_key`), never anywhere else.
    `idle_timeout_s` bounds silence while the model is answering, `tool_timeout_s` while
    a tool (a long test run, say) is executing. `config_dir` becomes CLAUDE_CONFIG_DIR.
    """

    cwd: Path
    prompt: str
    config_dir: Path
    system_prompt: str = ""
    model: str | None = None
    tools: Sequence[str] | None = None
    allowed_tools: Sequence[str] = ()
    disallowed_tools: Sequence[str] = ()
    bash_policy: BashPolicy | None = None
    mcp: StoneforgeTools | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    api_key: str | None = None
    base_url: str | None = None
    resume: str | None = None
    max_turns: int | None = None
    idle_timeout_s: float | None = 600.0
    tool_timeout_s: float | None = 1800.0
    #: Setting sources the CLI loads when `claude_setup` is None (with one, the session's own
    #: merged settings file is the only source: see :mod:`~stoneforge.agents.claude_setup`).
    setting_sources: Sequence[str] = ("project",)
    #: The user's and the project's Claude Code set-up this session gets.
    claude_setup: ClaudeSetup | None = None
    #: The repository the session works for: kept readable, its `.stoneforge/` hidden, when the
    #: provider contains the agent (see `agents.sandbox`).
    repo_root: Path | None = None
    #: The session changes nothing: contained, its working directory is mounted read-only too
    #: (only its config dir is writable).
    read_only: bool = False

    def resumed(self, provider_session_id: str, prompt: str) -> SessionSpec:
        """The same session continued by the provider (same config dir: the transcript
        lives there) with a new user message."""
        return dataclasses.replace(self, resume=provider_session_id, prompt=prompt)


@runtime_checkable
class AgentSession(Protocol):
    """One live agent process."""

    @property
    def provider_session_id(self) -> str | None: ...

    @property
    def pid(self) -> int | None: ...

    def events(self) -> AsyncIterator[AgentEvent]:
        """Events until the run ends (a Result, a Failure or Stopped is the last)."""
        ...

    async def send(self, text: str) -> None:
        """Queue a user message; the agent takes it in at its next turn."""
        ...

    async def stop(self, reason: str = "") -> None:
        """End the session gracefully (interrupt, then terminate)."""
        ...

    def kill(self) -> None:
        """SIGKILL the process and its children now."""
        ...


class AgentProvider(Protocol):
    name: str

    def open(self, spec: SessionSpec) -> AbstractAsyncContextManager[AgentSession]:
        """Start a session; leaving the context ends the process."""
        ...
