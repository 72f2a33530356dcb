"""`sf doctor`: what is missing for stoneforge to work here, and how to fix it."""

from __future__ import annotations

from pathlib import Path

from stoneforge.agents.doctor import (
    CheckResult,
    check_claude_setup,
    check_cli,
    check_credentials,
    check_sandbox,
)
from stoneforge.config import StoneforgeConfig, load_config
from stoneforge.errors import StoneforgeError
from stoneforge.git.repo import check_git


def _repository(start: Path) -> tuple[CheckResult, str | None]:
    from stoneforge.workspace import STATE_DB, STATE_DIR, find_repo_root

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
    root, config = _config(start or Path.cwd())
    results.append(check_sandbox(config.agents.sandbox))
    roles = config.agents
    results += check_claude_setup(
        root,
        inherit=roles.claudeSetup == "inherit",
        mcp_roles=[
            name
            for name, role in (
                ("worker", roles.worker),
                ("steward", roles.steward),
                ("director", roles.director),
            )
            if role.mcpServers == "inherit"
        ],
    )
    return results


def _config(start: Path) -> tuple[Path | None, StoneforgeConfig]:
    from stoneforge.workspace import find_repo_root

    try:
        root = find_repo_root(start)
    except StoneforgeError:
        return None, StoneforgeConfig()
    try:
        return root, load_config(root)
    except StoneforgeError:
        return root, StoneforgeConfig()  # a broken config: the defaults apply (reported above)
