"""Preparing a fresh checkout the way a team's repository needs: `worktree.copy` and `.setup`.

Untracked files a checkout needs but git does not carry (`.env`, local config) are copied from the
main checkout (globs allowed, never over a file that is there); then the set-up commands run in
the checkout (`uv sync`, `npm ci`), each like a check: its own process group, a timeout, the tail
of its output. Used for each new task checkout before its agent starts, and by the steward for
each candidate's check checkout (unless `worktree.setupChecks: false`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from stoneforge.models import CheckRun
from stoneforge.orchestrator.checks import run_check

#: Directories never copied from: git's own and stoneforge's state (other tasks, the store).
_NEVER = (".git", ".stoneforge")


def copy_untracked(source: Path, dest: Path, patterns: Sequence[str]) -> list[str]:
    """Copy the files of ``source`` matching ``patterns`` into ``dest``; the paths copied."""
    copied: list[str] = []
    for pattern in patterns:
        for found in sorted(source.glob(pattern)):
            rel = found.relative_to(source)
            if not found.is_file() or rel.parts[0] in _NEVER:
                continue
            target = dest / rel
            if target.exists() or target.is_symlink():
                continue  # the branch has its own: never overwritten
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found, target)
            copied.append(rel.as_posix())
    return copied


async def run_setup(
    commands: Sequence[str], cwd: Path, timeout_s: float, env: Mapping[str, str] | None = None
) -> list[CheckRun]:
    """Each command in order until one fails; the runs, the failing one last."""
    runs = []
    for command in commands:
        run = await run_check(command, cwd, timeout_s, extra_env=env)
        runs.append(run)
        if run.exit_code != 0:
            break
    return runs


def setup_failure(runs: Sequence[CheckRun]) -> str | None:
    """How a set-up failed, with its output, for the task's note; None when it passed."""
    failed = next((r for r in runs if r.exit_code != 0), None)
    if failed is None:
        return None
    code = "timed out" if failed.exit_code is None else f"exit {failed.exit_code}"
    return (
        f"worktree.setup command `{failed.command}` failed ({code}) in the new checkout; "
        f"no agent was started. Output:\n{failed.output_tail[-2500:]}"
    )
