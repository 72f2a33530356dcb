"""The one place secrets are recognised and kept out of what we write or hand on.

Two jobs, one rule for what a secret is (a variable whose name says so, or a value shaped like an
Anthropic key): `scrub_env` removes credentials from the environment of checks, git hooks and
agents' tools; `redact` / `Redactor` replace secret values in text bound for the store, the event
log, logs, the editor and prompts (so a `GITHUB_TOKEN` a check prints is never stored or sent on).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")

# Names of variables whose values are credentials: never handed to a hook, a check or an agent's
# tools (`GITHUB_TOKEN`, `NPM_AUTH_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `PGPASSWORD`, ...).
#: (An extended regular expression, searched case-insensitively; the agents' command prefix script
#: uses the same text with bash's `=~`.)
SECRET_NAME_PATTERN = "KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL"
_SECRET_NAME = re.compile(SECRET_NAME_PATTERN, re.IGNORECASE)
#: Not secret by name, but they point our agents at their model endpoint: no child needs them.
AGENT_ONLY_VARS = ("ANTHROPIC_BASE_URL",)
_MIN_SECRET_LEN = 8  # shorter values would redact ordinary words

# Anthropic keys look like sk-ant-api03-...; catch them even when they come from elsewhere.
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
REDACTED = "[REDACTED]"


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a credential."""
    return name in SECRET_ENV_VARS or _SECRET_NAME.search(name) is not None


def scrub_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) without credentials: what checks and git hooks run with."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not is_secret_name(k) and k not in AGENT_ONLY_VARS}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names say they are credentials."""
    return [v for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN]


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret of our environment (and ``extra_secrets``) replaced."""
    if not text:
        return text
    return Redactor([*secret_values(os.environ), *extra_secrets]).text(text)


class Redactor:
    """Replaces a known set of secret values (and key-shaped strings) in text and JSON data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len)[::-1]

    def add(self, secret: str) -> None:
        if len(secret) >= _MIN_SECRET_LEN and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len)[::-1]

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _KEY_PATTERN.sub(REDACTED, value)

    def obj(self, value: Any) -> Any:
        """Redact strings anywhere inside JSON-like data."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.obj(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record before a handler formats it:
    those of our environment, or those a session's ``redactor`` knows."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redactor.text(message) if self.redactor else redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
