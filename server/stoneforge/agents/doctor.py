"""Checks for `sf doctor`: can we run agents at all? Structured results, no printing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from stoneforge.agents import claude_setup as setup
from stoneforge.agents.claude_login import resolve_credential, user_config_dir
from stoneforge.agents.env import QUIET_ENV
from stoneforge.agents.sandbox import INSTALL_HINT, SandboxMode, probe, report


class CheckResult(BaseModel):
    name: str
    ok: bool
    detail: str
    hint: str | None = None


def bundled_cli_path() -> Path | None:
    """The `claude` binary shipped inside the claude-agent-sdk wheel, if present."""
    try:
        import claude_agent_sdk
    except ImportError:
        return None
    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def resolve_cli(cli_path: str | Path | None = None) -> Path | None:
    if cli_path is not None:
        return Path(cli_path)
    return bundled_cli_path()


def check_cli(cli_path: str | Path | None = None, *, timeout_s: float = 30.0) -> CheckResult:
    """`claude --version` runs and prints a version."""
    path = resolve_cli(cli_path)
    if path is None:
        return CheckResult(
            name="claude-cli",
            ok=False,
            detail="no Claude Code CLI found (the claude-agent-sdk wheel bundles one)",
            hint="reinstall stoneforge, or set agents.<role>.cliPath to your own `claude`",
        )
    env = {**os.environ, **QUIET_ENV}
    try:
        proc = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult(name="claude-cli", ok=False, detail=f"{path}: {exc}")
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        detail = f"{path} --version exited {proc.returncode}: {proc.stderr.strip()[:200]}"
        return CheckResult(name="claude-cli", ok=False, detail=detail)
    return CheckResult(name="claude-cli", ok=True, detail=f"{version} ({path})")


def check_credentials(
    env: Mapping[str, str] | None = None, *, base_url: str | None = None
) -> CheckResult:
    """Which credential agent sessions will use: a variable, a `claude` login, a cloud provider
    or a base URL (see :mod:`~stoneforge.agents.claude_login`). Names only, never values."""
    credential = resolve_credential(os.environ if env is None else env, base_url=base_url)
    if credential.ok:
        return CheckResult(name="credentials", ok=True, detail=f"agents use {credential.source}")
    return CheckResult(
        name="credentials", ok=False, detail=credential.problem or "none", hint=credential.hint
    )


def check_claude_setup(
    repo_root: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    inherit: bool = True,
    mcp_roles: Sequence[str] = ("worker",),
) -> list[CheckResult]:
    """What of the user's and the project's Claude Code set-up agents will get: MCP servers by
    name and scope, settings files and their hook count, CLAUDE.md files."""
    env = os.environ if env is None else env
    servers, problems = setup.find_mcp_servers(repo_root, env)
    if not inherit:
        servers = [s for s in servers if s.scope == "project"]
    listed = ", ".join(f"{s.name} ({s.scope}, {s.transport})" for s in servers) or "none"
    roles = ", ".join(mcp_roles) or "no role (agents.<role>.mcpServers: none)"
    results = [
        CheckResult(
            name="mcp-servers",
            ok=not problems,
            detail=f"{listed}; offered to: {roles}"
            + "".join(f"; {p.path} {p.problem}" for p in problems),
            hint="fix or remove the file named above" if problems else None,
        )
    ]
    settings = [user_config_dir(env) / "settings.json"] if inherit else []
    if repo_root is not None:
        settings.append(repo_root / ".claude" / "settings.json")
    found = [p for p in settings if p.is_file()]
    bad: list[setup.SetupProblem] = []
    hooks = sum(setup.hook_count(setup.read_json(p, bad)) for p in found)
    results.append(
        CheckResult(
            name="claude-settings",
            ok=not bad,
            detail=(", ".join(map(str, found)) or "none")
            + f"; {hooks} hook{'s' * (hooks != 1)} (run without credentials)"
            + "".join(f"; {p.path} {p.problem}" for p in bad),
            hint="fix the file named above" if bad else None,
        )
    )
    memory = [setup.user_memory_file(env)] if inherit else []
    memory = [p for p in memory if p.is_file()]
    if repo_root is not None:
        memory += setup.project_memory_files(repo_root)
    results.append(
        CheckResult(
            name="claude-memory", ok=True, detail=", ".join(map(str, memory)) or "no CLAUDE.md"
        )
    )
    return results


def check_sandbox(mode: SandboxMode = "auto") -> CheckResult:
    """Can agents be contained with bubblewrap here (`agents.sandbox`)?"""
    status = report(mode)
    socat = probe().socat
    extra = "" if socat else " (socat is missing too; Claude Code's own network sandbox needs it)"
    if status.contained:
        return CheckResult(name="sandbox", ok=True, detail=status.detail + extra)
    if mode == "off":
        return CheckResult(name="sandbox", ok=True, detail=f"WARNING: {status.warning}")
    return CheckResult(
        name="sandbox",
        ok=False,
        detail=(status.warning or status.detail) + extra,
        hint=INSTALL_HINT,
    )


def run_checks(
    cli_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
) -> list[CheckResult]:
    return [check_cli(cli_path), check_credentials(env, base_url=base_url)]
