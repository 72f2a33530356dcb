"""Shared fixtures: real git repositories in temp dirs and the `sf` CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest_plugins = ["fake_model_fixtures"]

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def review_off(config_text: str) -> str:
    """The config with `agents.steward.review: false` unless it says otherwise.

    For tests about other things (the queue, checks, stopping) whose scripted model gives no
    review: with review on, each merge request would first wait for a review session.
    """
    data = yaml.safe_load(config_text) or {}
    steward = data.setdefault("agents", {}).setdefault("steward", {})
    steward.setdefault("review", False)
    return yaml.safe_dump(data, sort_keys=False)


def write_config(repo: Path, config_text: str, *, review: bool = False) -> None:
    """Write `.stoneforge/config.yaml` (review off unless asked for, see `review_off`)."""
    (repo / ".stoneforge").mkdir(exist_ok=True)
    path = repo / ".stoneforge" / "config.yaml"
    path.write_text(config_text if review else review_off(config_text))


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fresh git repository on `main` with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("# demo\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "initial")
    return root


class SfResult:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"<sf rc={self.returncode} stdout={self.stdout!r} stderr={self.stderr!r}>"


SfRunner = Callable[..., SfResult]


@pytest.fixture
def sf(repo: Path) -> SfRunner:
    """Run `sf ARGS...` in a subprocess inside ``repo`` (or ``cwd=``), as a user types it."""

    def run(*args: str, cwd: Path | None = None, check: bool = True) -> SfResult:
        proc = subprocess.run(
            [sys.executable, "-m", "stoneforge", *args],
            cwd=cwd or repo,
            capture_output=True,
            text=True,
            env={**os.environ, **GIT_ENV},
            timeout=120,
        )
        result = SfResult(proc)
        if check and proc.returncode != 0:
            raise AssertionError(f"sf {' '.join(args)} failed: {result!r}")
        return result

    return run


@pytest.fixture
def initialised(repo: Path, sf: SfRunner) -> Path:
    sf("init")
    return repo
