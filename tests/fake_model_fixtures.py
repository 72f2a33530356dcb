"""Fixtures for tests that run the real Claude Code CLI against the scripted endpoint.

Register in conftest.py with ``from fake_model_fixtures import *  # noqa: F403`` (or
``pytest_plugins = ["fake_model_fixtures"]``). Fixtures:

- ``fake_model``: a started :class:`~stoneforge.demo.FakeModel` on a free port.
- ``claude_provider``: the Claude Code provider on the bundled CLI.
- ``agent_spec``: factory ``agent_spec(role, cwd, prompt, **build_spec_kwargs)`` returning a
  :class:`~stoneforge.agents.SessionSpec` wired to ``fake_model``, with the fake key, a
  private CLAUDE_CONFIG_DIR under tmp and short timeouts.
- ``git_repo``: factory ``git_repo(name="repo")`` making a repository on ``main`` with one
  commit; ``git``: ``git(cwd, *args) -> stdout`` (raises on failure).
- ``fake_api_key``: the recognisable fake key every ``agent_spec`` session gets.

Tests use these through fixtures only (no imports from this module), so pytest can load
it as a plugin with assertion rewriting.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stoneforge.agents import ClaudeCodeProvider, Role, SessionSpec, build_spec
from stoneforge.demo import FakeModel

FAKE_API_KEY = "sk-ant-api03-STONEFORGE-FAKE-KEY-0123456789abcdef"
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Agent",
    "GIT_AUTHOR_EMAIL": "agent@example.com",
    "GIT_COMMITTER_NAME": "Test Agent",
    "GIT_COMMITTER_EMAIL": "agent@example.com",
}
# Fast failure in tests: no API retries.
TEST_AGENT_ENV = {"CLAUDE_CODE_MAX_RETRIES": "0", **_GIT_ENV}

SpecFactory = Callable[..., SessionSpec]


def run_git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **_GIT_ENV}
    )
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@pytest.fixture
def fake_api_key() -> str:
    return FAKE_API_KEY


@pytest.fixture
def git() -> Callable[..., str]:
    return run_git


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture
def claude_provider() -> ClaudeCodeProvider:
    return ClaudeCodeProvider()


@pytest.fixture
def agent_spec(fake_model: FakeModel, tmp_path: Path) -> SpecFactory:
    counter = iter(range(1, 10_000))

    def make(role: Role | str, cwd: Path, prompt: str = "Do the task.", **kw: Any) -> SessionSpec:
        config_dir = kw.pop("config_dir", None) or tmp_path / "agents" / f"session-{next(counter)}"
        env = {**TEST_AGENT_ENV, **kw.pop("env", {})}
        kw.setdefault("idle_timeout_s", 30.0)
        kw.setdefault("tool_timeout_s", 60.0)
        return build_spec(
            role,
            cwd=cwd,
            prompt=prompt,
            config_dir=config_dir,
            api_key=kw.pop("api_key", FAKE_API_KEY),
            base_url=fake_model.base_url,
            env=env,
            **kw,
        )

    return make


@pytest.fixture
def git_repo(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "repo") -> Path:
        root = tmp_path / name
        root.mkdir()
        run_git(root, "init", "-q", "-b", "main")
        (root / "README.md").write_text("# demo\n")
        run_git(root, "add", "README.md")
        run_git(root, "commit", "-q", "-m", "initial")
        return root

    return make
