"""What the fake endpoint received, kept for assertions (concurrency, tool results, ...).

Credentials never enter a record: auth headers are replaced by a short fingerprint so a
test can still check which key arrived.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

_SECRET_HEADERS = {"x-api-key", "authorization", "proxy-authorization", "cookie"}
_CWD_RE = re.compile(r"Primary working directory: (.+)")


def key_fingerprint(key: str) -> str:
    """A short, non-reversible tag for a credential (sha256 prefix)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def redact_headers(headers: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """Return headers without credentials, plus the fingerprint of the key that was sent."""
    clean: dict[str, str] = {}
    fingerprint: str | None = None
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS:
            token = value.removeprefix("Bearer ").strip()
            fingerprint = key_fingerprint(token)
            clean[name] = "<redacted>"
        else:
            clean[name] = value
    return clean, fingerprint


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _text_of(content: Any) -> str:
    parts: list[str] = []
    for block in _blocks(content):
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_text_of(block.get("content")))
    return "\n".join(parts)


@dataclass
class RecordedRequest:
    """One HTTP request the endpoint answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    api_key_fingerprint: str | None
    started_at: float
    kind: str = "unknown"  # main | side | count_tokens | models | outage | unknown
    script: str | None = None
    step_index: int | None = None
    auto: str | None = None  # "tool_search" when the endpoint loaded deferred tools itself
    status: int | None = None
    response_tool_uses: list[dict[str, Any]] = field(default_factory=list)
    finished_at: float | None = None
    client_disconnected: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in (self.body or {}).get("tools") or []]

    @property
    def session_id(self) -> str | None:
        for name, value in self.headers.items():
            if name.lower() == "x-claude-code-session-id":
                return value
        return None

    @property
    def all_text(self) -> str:
        """System prompt and every message as plain text (for routing and searching)."""
        body = self.body or {}
        system = body.get("system")
        parts = [_text_of(system)] if system else []
        parts.extend(_text_of(m.get("content")) for m in self.messages)
        return "\n".join(parts)

    @property
    def cwd(self) -> str | None:
        match = _CWD_RE.search(self.all_text)
        return match.group(1).strip() if match else None

    @property
    def first_user_text(self) -> str:
        for message in self.messages:
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""

    def tool_results(self, *, last_only: bool = True) -> list[dict[str, Any]]:
        """`tool_result` blocks the CLI sent: of the last user message, or of all."""
        users = [m for m in self.messages if m.get("role") == "user"]
        if last_only:
            users = users[-1:]
        return [
            b for m in users for b in _blocks(m.get("content")) if b.get("type") == "tool_result"
        ]

    def tool_result_text(self, block: dict[str, Any]) -> str:
        return _text_of(block.get("content"))
