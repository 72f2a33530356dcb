"""`sf` starts without loading what only running agents need.

claude-agent-sdk and the MCP library take about 1.2 s to import; every `sf task list`, `sf
status` and the language server's start would pay for them. They load where a session starts.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

AGENT_ONLY = ("claude_agent_sdk", "mcp")


@pytest.mark.parametrize(
    "module", ["stoneforge.cli", "stoneforge.service", "stoneforge.lsp.server"]
)
def test_the_front_ends_import_without_the_agent_sdk(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        f"print(','.join(sorted(m for m in {AGENT_ONLY!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=os.environ
    ).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def test_the_provider_still_loads_where_agents_start() -> None:
    from stoneforge.agents import ClaudeCodeProvider

    assert ClaudeCodeProvider.__module__ == "stoneforge.agents.claude_code"
