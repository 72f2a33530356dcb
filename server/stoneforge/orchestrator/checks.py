"""Run the project's checks (`merge.checks`) on one exact commit, in the steward's worktree."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from stoneforge.models import CheckRun
from stoneforge.redact import SECRET_ENV_VARS, redact

OUTPUT_TAIL_CHARS = 4000


def check_env() -> dict[str, str]:
    """The environment checks run in: ours, without API keys (tests never need them)."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
    env.pop("ANTHROPIC_BASE_URL", None)
    return env


def run_check(command: str, cwd: Path, timeout_s: float) -> CheckRun:
    """One shell command; its exit code, duration and the tail of its output."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd,
            env=check_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            start_new_session=True,
        )
        code: int | None = proc.returncode
        output = proc.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        code = None
        partial = exc.stdout.decode("utf-8", "replace") if exc.stdout else ""
        output = partial + f"\n[stoneforge: timed out after {timeout_s:.0f}s]"
    return CheckRun(
        command=command,
        exit_code=code,
        duration_s=round(time.monotonic() - started, 3),
        output_tail=redact(output[-OUTPUT_TAIL_CHARS:]),
    )


def run_checks(commands: Sequence[str], cwd: Path, timeout_s: float) -> list[CheckRun]:
    """Every command in order; stops at the first failure (the later ones would not count)."""
    runs = []
    for command in commands:
        run = run_check(command, cwd, timeout_s)
        runs.append(run)
        if run.exit_code != 0:
            break
    return runs


def passed(runs: Sequence[CheckRun]) -> bool:
    return all(run.exit_code == 0 for run in runs)
