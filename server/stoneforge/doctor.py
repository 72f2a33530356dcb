"""`sf doctor`: what is missing for stoneforge to work here, and how to fix it."""

from __future__ import annotations

from pathlib import Path

from stoneforge.agents.doctor import CheckResult, check_cli, check_credentials, check_sandbox
from stoneforge.agents.sandbox import SandboxMode
from stoneforge.config import load_config
from stoneforge.errors import StoneforgeError
from stoneforge.git.repo import check_git


def _repository(start: Path) -> tuple[CheckResult, str | None]:
    from stoneforge.service import STATE_DB, STATE_DIR, find_repo_root

    try:
        root = find_repo_root(start)
    except StoneforgeError as exc:
        return CheckResult(
            name="repository", ok=False, detail=str(exc), hint="cd into a git repository"
        ), None
    try:
        config = load_config(root)
    except StoneforgeError as exc:
        return CheckResult(
            name="config", ok=False, detail=str(exc), hint="fix the file named above"
        ), None
    if not (root / STATE_DIR / STATE_DB).exists():
        return (
            CheckResult(
                name="repository",
                ok=False,
                detail=f"{root} is not initialised",
                hint="run `sf init`",
            ),
            config.agents.worker.cliPath,
        )
    return CheckResult(
        name="repository", ok=True, detail=f"{root} (initialised)"
    ), config.agents.worker.cliPath


def run_doctor(start: Path | None = None) -> list[CheckResult]:
    git = check_git()
    results = [
        CheckResult(
            name="git",
            ok=git.ok,
            detail=git.message,
            hint=None if git.ok else f"install git >= {git.minimum} (apt-get install git)",
        )
    ]
    repo, cli_path = _repository(start or Path.cwd())
    results.append(repo)
    results.append(check_cli(cli_path))
    results.append(check_credentials())
    results.append(check_sandbox(_sandbox_mode(start or Path.cwd())))
    return results


def _sandbox_mode(start: Path) -> SandboxMode:
    from stoneforge.service import find_repo_root

    try:
        return load_config(find_repo_root(start)).agents.sandbox
    except StoneforgeError:
        return "auto"  # no repository or a broken config: the default applies
