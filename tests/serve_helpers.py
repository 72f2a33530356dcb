"""Run `sf serve` as a real subprocess against the scripted model endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import GIT_ENV
from stoneforge.demo import FakeModel, Step

FAKE_KEY = "sk-ant-api03-SERVE-TEST-KEY-abcdef0123456789"


def serve_env(model: FakeModel) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **model.env(FAKE_KEY)}


def start_serve(
    repo: Path, model: FakeModel, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stoneforge", "serve", *args],
        cwd=repo,
        env={**serve_env(model), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_serve(
    repo: Path,
    model: FakeModel,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    return finish_serve(start_serve(repo, model, "--until-idle", *args, env=env), timeout)


def finish_serve(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a started `sf serve --until-idle` to end; kill it and fail after ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"sf serve did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}"
        ) from None
    return proc.returncode, out, err


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def commit_steps(path: str, content: str, message: str, *, delay_s: float = 0.0) -> list[Step]:
    """A worker that writes one file, commits it and reports completion."""
    return [
        Step.write(path, content, text=f"Writing {path}.", delay_s=delay_s),
        Step.bash(f"git add -A && git commit -q -m {message!r}"),
        Step.mcp("complete_task", summary=message),
        Step.say(f"Done: {message}."),
    ]
