"""`sf doctor` tells a user what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
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
