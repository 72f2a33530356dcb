"""Which credential agent sessions use, and the user's existing `claude` login.

Decisions:

- A credential in the environment wins, in the CLI's own order: `ANTHROPIC_API_KEY`,
  `ANTHROPIC_AUTH_TOKEN`, `CLAUDE_CODE_OAUTH_TOKEN` (what `claude setup-token` prints: a
  long-lived subscription token), or a cloud provider (`CLAUDE_CODE_USE_BEDROCK`, ...).
- Without one, the access token of an existing `claude` login is used: `.credentials.json` in
  the user's own `CLAUDE_CONFIG_DIR` (of the environment `sf` runs in, not a session's), else in
  `~/.claude/`, key `claudeAiOauth.accessToken` / `expiresAt` (milliseconds). It reaches the
  session only as `CLAUDE_CODE_OAUTH_TOKEN` in the CLI's environment: never copied into the
  session's config dir (the agent can read that), never logged or stored, and scrubbed from every
  command the CLI starts like the API key (:mod:`~stoneforge.agents.command_prefix`).
- An expired login is not used: refreshing it would mean writing the user's credentials file
  from an agent session. `sf doctor` says what to run instead (`claude setup-token`, then export
  `CLAUDE_CODE_OAUTH_TOKEN`). Logins kept in the macOS keychain are not read.

Only names and paths are ever reported; token values stay in :class:`pydantic.SecretStr`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, SecretStr

from stoneforge.agents.command_prefix import CLI_CREDENTIALS

CLOUD_VARS = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY")
#: The order the CLI itself prefers them in.
CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
assert set(CREDENTIAL_VARS) == CLI_CREDENTIALS
OAUTH_VAR = "CLAUDE_CODE_OAUTH_TOKEN"
SETUP_TOKEN_HINT = (
    "run `claude setup-token` (it prints a long-lived token for your subscription), then "
    "`export CLAUDE_CODE_OAUTH_TOKEN=<that token>` in the shell that runs `sf serve`; "
    "or export ANTHROPIC_API_KEY=..."
)


class Login(BaseModel):
    """An existing `claude` login's access token (see the module docstring)."""

    path: Path
    token: SecretStr
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


class LoginProblem(BaseModel):
    path: Path
    problem: str


class Credential(BaseModel):
    """The credential sessions will use: where it comes from (a name, never a value), the
    variables that carry it to the CLI, or what is wrong and how to fix it."""

    source: str | None
    env: dict[str, SecretStr] = {}
    problem: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        return self.source is not None

    def secret_env(self) -> dict[str, str]:
        return {k: v.get_secret_value() for k, v in self.env.items()}


def home_dir(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's own Claude Code directory: `$CLAUDE_CONFIG_DIR`, else `~/.claude`."""
    env = os.environ if env is None else env
    custom = env.get("CLAUDE_CONFIG_DIR")
    return Path(custom).expanduser() if custom else home_dir(env) / ".claude"


def credential_files(env: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if env is None else env
    files = [
        user_config_dir(env) / ".credentials.json",
        home_dir(env) / ".claude" / ".credentials.json",
    ]
    return list(dict.fromkeys(files))


def find_login(env: Mapping[str, str] | None = None) -> Login | LoginProblem | None:
    """The first credentials file with an OAuth access token; a problem when the file is there
    but unusable; None when there is no login file at all."""
    problem: LoginProblem | None = None
    for path in credential_files(env):
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            oauth = data.get("claudeAiOauth") if isinstance(data, dict) else None
        except (OSError, ValueError) as exc:
            problem = problem or LoginProblem(path=path, problem=f"cannot be read: {exc}")
            continue
        token = oauth.get("accessToken") if isinstance(oauth, dict) else None
        if not isinstance(token, str) or not token:
            problem = problem or LoginProblem(path=path, problem="has no claudeAiOauth.accessToken")
            continue
        expires = oauth.get("expiresAt")
        expires_at = (
            datetime.fromtimestamp(expires / 1000, UTC)
            if isinstance(expires, int | float) and not isinstance(expires, bool)
            else None
        )
        return Login(path=path, token=SecretStr(token), expires_at=expires_at)
    return problem


def resolve_credential(
    env: Mapping[str, str] | None = None,
    *,
    base_url: str | None = None,
    now: datetime | None = None,
) -> Credential:
    """What sessions started from `env` (our environment plus the agents' own) will use."""
    env = os.environ if env is None else env
    for name in (*CREDENTIAL_VARS, *CLOUD_VARS):
        if env.get(name):
            return Credential(source=name)
    login = find_login(env)
    if isinstance(login, Login):
        if not login.expired(now):
            return Credential(
                source=f"claude login ({login.path}, as {OAUTH_VAR})",
                env={OAUTH_VAR: login.token},
            )
        when = login.expires_at.isoformat(timespec="minutes") if login.expires_at else "?"
        problem = f"the claude login in {login.path} expired at {when}"
    elif isinstance(login, LoginProblem):
        problem = f"{login.path} {login.problem}"
    else:
        problem = "no API key, token or claude login found"
    url = base_url or env.get("ANTHROPIC_BASE_URL")
    if url:  # a local endpoint (the demo, a proxy) may need no credential at all
        return Credential(source=f"base URL {url}")
    return Credential(source=None, problem=problem, hint=SETUP_TOKEN_HINT)
