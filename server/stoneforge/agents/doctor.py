"""Checks for `sf doctor`: can we run agents at all? Structured results, no printing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from stoneforge.agents.env import QUIET_ENV
from stoneforge.agents.sandbox import INSTALL_HINT, SandboxMode, probe, report

_CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
_CLOUD_VARS = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")


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
    """An API key, a token, a cloud provider or a base URL is configured.

    Only names are reported, never values.
    """
    env = os.environ if env is None else env
    found = [v for v in (*_CREDENTIAL_VARS, *_CLOUD_VARS) if env.get(v)]
    url = base_url or env.get("ANTHROPIC_BASE_URL")
    if url:
        found.append(f"base URL {url}")
    if found:
        return CheckResult(name="credentials", ok=True, detail="set: " + ", ".join(found))
    return CheckResult(
        name="credentials",
        ok=False,
        detail="no API key or base URL is set",
        hint="export ANTHROPIC_API_KEY=... (or ANTHROPIC_BASE_URL for a local endpoint)",
    )


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
