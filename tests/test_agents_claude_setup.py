"""Your Claude Code set-up in a real session (the bundled CLI against the scripted endpoint):
a user MCP server is offered and works, CLAUDE.md memory reaches the model, hooks run, and
none of the processes the CLI starts sees a credential. Real files under a temporary HOME."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stoneforge.agents import ClaudeCodeProvider, Role, SessionSpec, run_session
from stoneforge.agents.claude_setup import for_role
from stoneforge.agents.sandbox import probe
from stoneforge.demo import FakeModel, Step

pytest_plugins = ["fake_model_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

OAUTH = "sk-ant-oat01-SETUP-TOKEN-NEVER-SEEN-0123456789"
GITHUB = "ghp_users-own-github-token-never-seen"
SERVER_SECRET = "probe-secret-the-server-may-have"

# A minimal MCP server over stdio (JSON-RPC lines): one tool, and its environment on disk.
PROBE_SERVER = """\
import json, os, sys
out = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "probe-server.env.json")
with open(out, "w") as f:
    json.dump(dict(os.environ), f)
def send(msg):
    sys.stdout.write(json.dumps(msg) + "\\n"); sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line) if line.strip() else {}
    if req.get("id") is None:
        continue
    method, rid = req.get("method"), req["id"]
    if method == "initialize":
        version = req["params"].get("protocolVersion", "2024-11-05")
        send({"jsonrpc": "2.0", "id": rid, "result": {"protocolVersion": version,
              "capabilities": {"tools": {}}, "serverInfo": {"name": "probe", "version": "1"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": [{"name": "echo",
              "description": "Echo text back", "inputSchema": {"type": "object",
              "properties": {"text": {"type": "string"}}, "required": ["text"]}}]}})
    elif method == "tools/call":
        text = req["params"]["arguments"].get("text", "")
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text",
              "text": "probe echoes " + text}]}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": method}})
"""


def _hook(name: str) -> dict[str, object]:
    command = f'env > "$CLAUDE_CONFIG_DIR/{name}.env"'
    return {"matcher": "Bash", "hooks": [{"type": "command", "command": command}]}


def _user_setup(home: Path, repo: Path) -> Path:
    """~/.claude (settings with a hook, CLAUDE.md), ~/.claude.json (a user MCP server), and the
    project's CLAUDE.md and hook. Returns the server script (inside the repository, which the
    sandbox keeps readable)."""
    claude = home / ".claude"
    claude.mkdir(parents=True)
    (claude / "CLAUDE.md").write_text("User memory: always answer like a lighthouse keeper.\n")
    (claude / "settings.json").write_text(
        json.dumps(
            {
                "env": {"USER_SETTING_VAR": "from-user-settings"},
                "hooks": {"PreToolUse": [_hook("user-hook")]},
            }
        )
    )
    server = repo / "tools" / "probe_mcp.py"
    server.parent.mkdir()
    server.write_text(PROBE_SERVER)
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "probe": {
                        "command": sys.executable,
                        "args": [str(server)],
                        "env": {"PROBE_TOKEN": "${PROBE_SOURCE_TOKEN}", "PROBE_PLAIN": "plain"},
                    }
                }
            }
        )
    )
    (repo / "CLAUDE.md").write_text("Project memory: the build is `make lighthouse`.\n")
    (repo / ".claude").mkdir()
    (repo / ".claude" / "settings.json").write_text(
        json.dumps({"hooks": {"PreToolUse": [_hook("project-hook")]}})
    )
    return server


@pytest.mark.parametrize("sandbox", ["off", "required"])
async def test_user_setup_reaches_the_session_and_no_child_sees_a_credential(
    sandbox: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_model: FakeModel,
    fake_api_key: str,
    agent_spec: Callable[..., SessionSpec],
    git_repo: Callable[..., Path],
) -> None:
    if sandbox == "required" and not probe().available:
        pytest.skip("bubblewrap does not work here")
    home = tmp_path / "home"
    repo = git_repo()
    _user_setup(home, repo)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB)
    monkeypatch.setenv("PROBE_SOURCE_TOKEN", SERVER_SECRET)
    config_dir = tmp_path / "agents" / "s1"
    fake_model.add_script(
        [
            Step.bash("echo hooked"),
            Step.mcp("echo", server="probe", text="ahoy"),
            Step.say("Done."),
        ],
        cwd=repo,
    )
    spec = agent_spec(
        Role.WORKER,
        repo,
        config_dir=config_dir,
        env={"CLAUDE_CODE_OAUTH_TOKEN": OAUTH},
        claude_setup=for_role(repo),
    )
    outcome = await run_session(ClaudeCodeProvider(sandbox=sandbox), spec)  # type: ignore[arg-type]

    assert outcome.status == "completed", outcome
    first = fake_model.main_requests()[0]
    # The user's server is offered (deferred behind ToolSearch in this CLI) and answers.
    assert "mcp__probe__echo" in first.all_text or "mcp__probe__echo" in first.tool_names
    results = [r.tool_result_text(b) for r in fake_model.main_requests() for b in r.tool_results()]
    assert "probe echoes ahoy" in results, results
    # Both memories reach the model.
    assert "always answer like a lighthouse keeper" in first.all_text
    assert "the build is `make lighthouse`" in first.all_text
    # The server got what its own config names, and no credential of ours or the user's.
    server_env = json.loads((config_dir / "probe-server.env.json").read_text())
    assert server_env.get("PROBE_TOKEN") == SERVER_SECRET
    assert server_env.get("PROBE_PLAIN") == "plain"
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "GITHUB_TOKEN"):
        assert name not in server_env, name
    # Both hooks ran, with the user's settings env and without any credential.
    for hook in ("user-hook", "project-hook"):
        seen = (config_dir / f"{hook}.env").read_text()
        assert "USER_SETTING_VAR=from-user-settings" in seen, hook
        for secret in (fake_api_key, OAUTH, GITHUB, SERVER_SECRET):
            assert secret not in seen, (hook, secret)
        assert "SF_MCP_SECRET" not in seen
    # Nothing the CLI wrote in its config dir (which the agent can read) holds a credential:
    # not the settings file, the memory, the transcript. (The probes' dumps are the test's own.)
    probes = {"probe-server.env.json", "user-hook.env", "project-hook.env"}
    for path in config_dir.rglob("*"):
        if path.is_file() and path.name not in probes:
            text = path.read_text(errors="replace")
            for secret in (fake_api_key, OAUTH, GITHUB, SERVER_SECRET):
                assert secret not in text, (path, secret)
