"""`sf doctor` tells a user what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import GIT_ENV


def doctor(cwd: Path, home: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANTHROPIC_")
        and k not in ("CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR")
    }
    return subprocess.run(
        [sys.executable, "-m", "stoneforge", "doctor"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, **GIT_ENV, "HOME": str(home or cwd.parent / "home"), **env},
    )


def test_doctor_reports_missing_credentials_and_init(repo: Path) -> None:
    result = doctor(repo)
    assert result.returncode == 1
    assert "git 2." in result.stdout and "(Claude Code)" in result.stdout
    assert "not initialised" in result.stdout and "sf init" in result.stdout
    assert "no API key, token or claude login found" in result.stdout
    assert "claude setup-token" in result.stdout and "CLAUDE_CODE_OAUTH_TOKEN" in result.stdout


def test_doctor_passes_when_everything_is_there(repo: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "stoneforge", "init"], cwd=repo, check=True, capture_output=True
    )
    secret = "sk-ant-api03-DOCTOR-SECRET-123456789"
    result = doctor(repo, ANTHROPIC_API_KEY=secret)
    assert result.returncode == 0, result.stdout
    assert "ANTHROPIC_API_KEY" in result.stdout
    assert secret not in result.stdout  # names only, never values


def test_doctor_outside_a_repository(tmp_path: Path) -> None:
    result = doctor(tmp_path, ANTHROPIC_BASE_URL="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "not inside a git repository" in result.stdout


def _hooks(n: int) -> dict[str, object]:
    hook = {"type": "command", "command": "true"}
    return {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [hook] * n}]}}


def test_doctor_lists_what_agents_will_get_from_your_claude_code(repo: Path) -> None:
    home = repo.parent / "home"
    (home / ".claude").mkdir(parents=True)
    token = "sk-ant-oat01-DOCTOR-LOGIN-TOKEN-123456789"
    expires = int((time.time() + 3600) * 1000)
    credentials = home / ".claude" / ".credentials.json"
    credentials.write_text(
        json.dumps({"claudeAiOauth": {"accessToken": token, "expiresAt": expires}})
    )
    (home / ".claude" / "settings.json").write_text(json.dumps(_hooks(1)))
    (home / ".claude" / "CLAUDE.md").write_text("mine\n")
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "mcpServers": {"docs": {"command": "docs-server"}},
                "projects": {str(repo): {"mcpServers": {"db": {"type": "http", "url": "u"}}}},
            }
        )
    )
    (repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"tracker": {"command": "t"}}}))
    (repo / "CLAUDE.md").write_text("project\n")
    (repo / ".claude").mkdir()
    (repo / ".claude" / "settings.json").write_text(json.dumps(_hooks(2)))

    out = doctor(repo, home).stdout

    assert f"agents use claude login ({credentials}, as CLAUDE_CODE_OAUTH_TOKEN)" in out
    assert token not in out  # names only, never values
    assert (
        "db (local, http), docs (user, stdio), tracker (project, stdio); offered to: worker" in out
    )
    settings = f"{home / '.claude' / 'settings.json'}, {repo / '.claude' / 'settings.json'}"
    assert f"{settings}; 3 hooks (run without credentials)" in out
    assert f"{home / '.claude' / 'CLAUDE.md'}, {repo / 'CLAUDE.md'}" in out


def test_doctor_says_what_to_run_when_the_login_expired(repo: Path) -> None:
    home = repo.parent / "home"
    (home / ".claude").mkdir(parents=True)
    expired = int((time.time() - 60) * 1000)
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps(
            {"claudeAiOauth": {"accessToken": "sk-ant-oat01-OLD-0123456789", "expiresAt": expired}}
        )
    )
    result = doctor(repo, home)
    assert result.returncode == 1
    assert "FAIL credentials  the claude login in" in result.stdout and "expired" in result.stdout
    assert "run `claude setup-token`" in result.stdout
    assert "export CLAUDE_CODE_OAUTH_TOKEN=<that token>" in result.stdout
