"""Keep API keys out of everything we write: the store, the event log and our logs."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")

# Names of variables whose values are credentials: never handed to a hook, a check or an agent's
# tools (`GITHUB_TOKEN`, `NPM_AUTH_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `PGPASSWORD`, ...).
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
#: Not secret by name, but they point our agents at their model endpoint: no child needs them.
_AGENT_ONLY_VARS = ("ANTHROPIC_BASE_URL",)

# Anthropic keys look like sk-ant-api03-...; catch them even when they come from elsewhere.
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says its value is a credential."""
    return name in SECRET_ENV_VARS or _SECRET_NAME.search(name) is not None


def scrub_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) without credentials: what checks and git hooks run with."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not is_secret_name(k) and k not in _AGENT_ONLY_VARS}


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret replaced by ``[redacted]``."""
    if not text:
        return text
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 8 and value in text:
            text = text.replace(value, REDACTED)
    for value in extra_secrets:
        if value and len(value) >= 8 and value in text:
            text = text.replace(value, REDACTED)
    return _KEY_PATTERN.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from every record before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True
