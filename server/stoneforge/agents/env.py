"""The environment every agent process gets, and where its CLI state lives."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Keep agent processes quiet and offline-safe: with these the CLI sends only the model
# requests themselves (no telemetry, update checks or other side traffic).
QUIET_ENV: dict[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}

AGENTS_DIR = Path(".stoneforge") / "agents"


def default_config_dir(repo_root: Path, session_id: str) -> Path:
    """`<repo>/.stoneforge/agents/<session-id>`: one CLAUDE_CONFIG_DIR per session, so
    agents never share CLI state and the user's ~/.claude stays untouched. Resuming a
    provider session needs the same directory (the transcript lives there)."""
    return repo_root / AGENTS_DIR / session_id


def session_env(
    *,
    config_dir: Path,
    api_key: str | None = None,
    base_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for one CLI process (merged over ours by the SDK).

    The API key travels only here: never on a command line, in a file or in a log.
    """
    env = dict(QUIET_ENV)
    env.update(extra or {})
    env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    if base_url:
        env["ANTHROPIC_BASE_URL"] = base_url
    if api_key:
        env["ANTHROPIC_API_KEY"] = api_key
    return env
