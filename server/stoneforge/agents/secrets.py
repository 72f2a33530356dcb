"""Keeping credentials out of events, logs and the store.

Secrets reach the CLI through its environment only. Anything we emit (event text, tool
inputs and results, stderr tails, error messages) passes through a :class:`Redactor`
that knows the secret values of that session, so even an agent that runs ``env``
cannot get the key into the event log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values would redact ordinary words
# Well-known key shapes, redacted even when we were not told the value.
_KEY_SHAPES = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of environment variables whose names look like credentials."""
    return [v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET_LEN]


class Redactor:
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
        return _KEY_SHAPES.sub(REDACTED, value)

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
    """A logging filter that redacts records; install it on handlers that may see
    provider output (the orchestrator does this for its own log handlers)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redactor.text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
