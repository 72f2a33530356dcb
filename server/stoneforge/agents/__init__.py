"""Agent runtime: providers (Claude Code via claude-agent-sdk), roles and permissions.

The orchestrator builds a :class:`SessionSpec` with :func:`build_spec` and runs it with
:func:`run_session` on a provider such as :class:`ClaudeCodeProvider`; everything it
learns arrives through callbacks, so this package knows nothing about storage.
"""

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoneforge.agents.accounting import TokenAccountant, TokenStats
from stoneforge.agents.bash_policy import BashPolicy
from stoneforge.agents.env import QUIET_ENV, default_config_dir, session_env
from stoneforge.agents.events import (
    AGENT_EVENT_ADAPTER,
    AgentEvent,
    ApiRetry,
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
from stoneforge.agents.mcp_tools import HandoffNote, StoneforgeTools, ToolCallRecord
from stoneforge.agents.process import is_alive, kill_tree
from stoneforge.agents.provider import AgentProvider, AgentSession, SessionSpec
from stoneforge.agents.provider_faults import FaultKind, ProviderFault, provider_fault
from stoneforge.agents.roles import Role, build_spec, load_role_prompt
from stoneforge.agents.runner import SessionOutcome, run_session
from stoneforge.agents.sandbox import SandboxMode
from stoneforge.redact import RedactingFilter, Redactor

if TYPE_CHECKING:
    from stoneforge.agents.claude_code import ClaudeCodeProvider, ClaudeCodeSession

# These load claude-agent-sdk (and the MCP library), about 1.2 s: only code that starts agents
# pays for it, not every `sf task list` (PEP 562: looked up at first use).
_LAZY = {
    "ClaudeCodeProvider": "stoneforge.agents.claude_code",
    "ClaudeCodeSession": "stoneforge.agents.claude_code",
}


def claude_code_provider(*, cli_path: str | Path | None, sandbox: SandboxMode) -> AgentProvider:
    """Claude Code, the default provider; its module (and the SDK) loads at this first use."""
    from stoneforge.agents.claude_code import ClaudeCodeProvider

    return ClaudeCodeProvider(cli_path=cli_path, sandbox=sandbox)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AGENT_EVENT_ADAPTER",
    "QUIET_ENV",
    "AgentEvent",
    "AgentProvider",
    "AgentSession",
    "ApiRetry",
    "AssistantTurn",
    "BashPolicy",
    "ClaudeCodeProvider",
    "ClaudeCodeSession",
    "Failure",
    "FailureKind",
    "FaultKind",
    "HandoffNote",
    "PermissionDenial",
    "PermissionDenied",
    "ProviderFault",
    "RedactingFilter",
    "Redactor",
    "Result",
    "Role",
    "SessionOutcome",
    "SessionSpec",
    "SessionStarted",
    "Stopped",
    "StoneforgeTools",
    "TokenAccountant",
    "TokenStats",
    "TokenUsage",
    "ToolCallRecord",
    "ToolResult",
    "ToolUse",
    "build_spec",
    "claude_code_provider",
    "default_config_dir",
    "is_alive",
    "kill_tree",
    "load_role_prompt",
    "provider_fault",
    "run_session",
    "session_env",
]
