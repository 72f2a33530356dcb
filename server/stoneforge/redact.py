"""Keep API keys out of everything we write: the store, the event log and our logs."""

from __future__ import annotations

import logging
import os
import re

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")

# Anthropic keys look like sk-ant-api03-...; catch them even when they come from elsewhere.
_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"


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
