"""Wire format of the Anthropic Messages API: response bodies, SSE events, error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str | None = None, request_id: str = "") -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error")
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind, "message": message or f"Scripted {kind} ({status})"},
    }
    if request_id:
        body["request_id"] = request_id
    return body


def message_body(
    *,
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: dict[str, int],
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _pieces(text: str, n: int = 3) -> list[str]:
    """Split text into a few deltas, as a real stream would."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_head(message: dict[str, Any]) -> Iterator[bytes]:
    """`message_start` (with input usage, content empty) and a `ping`."""
    start = dict(message, content=[], stop_reason=None)
    start["usage"] = dict(message["usage"], output_tokens=1)
    yield sse("message_start", {"type": "message_start", "message": start})
    yield sse("ping", {"type": "ping"})


def stream_block(index: int, block: dict[str, Any]) -> Iterator[bytes]:
    """content_block_start / deltas / stop for one text or tool_use block."""
    if block["type"] == "text":
        yield sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in _pieces(block["text"]):
            delta = {"type": "text_delta", "text": piece}
            yield sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
    else:
        head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        yield sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": head},
        )
        for piece in _pieces(json.dumps(block["input"])):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
    yield sse("content_block_stop", {"type": "content_block_stop", "index": index})


def stream_tail(message: dict[str, Any]) -> Iterator[bytes]:
    """`message_delta` (stop reason, final usage) and `message_stop`."""
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield sse("message_delta", {"type": "message_delta", "delta": delta, "usage": message["usage"]})
    yield sse("message_stop", {"type": "message_stop"})
