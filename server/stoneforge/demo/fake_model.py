"""A scripted model endpoint speaking the Anthropic Messages API on 127.0.0.1.

The real Claude Code CLI runs against it (``ANTHROPIC_BASE_URL``), so its agent loop
executes real tools while the answers follow a :class:`~stoneforge.demo.script.Script`.
Stdlib only: a ``ThreadingHTTPServer`` in a daemon thread, so it serves the same way
under pytest, the bench and ``sf demo`` and never blocks an event loop.

Routing: a request is *main* when it carries tools or the CLI's environment section
(the agent's own conversation); anything else (title, quota probes) is a *side*
request answered with the default step without moving any script forward. Scripted
calls to deferred MCP tools are preceded by the ``ToolSearch`` call the real model
would make to load them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stoneforge.demo import messages_api as api
from stoneforge.demo.recording import RecordedRequest, key_fingerprint, redact_headers
from stoneforge.demo.script import Script, Step, StepFactory, ToolCall

log = logging.getLogger(__name__)

TOOL_SEARCH = "ToolSearch"


def _norm(path: str) -> str:
    return os.path.realpath(path.rstrip("/") or "/")


@dataclass
class Outage:
    """The endpoint answers every `/v1/messages` request with `status` while this holds, whatever
    the scripts say (they do not move): for `duration_s` (None: until removed) from `start`
    (``time.monotonic()``; None: from the first request it answers), for every key or only the key
    whose fingerprint is `key_fingerprint`."""

    status: int
    start: float | None
    duration_s: float | None = None
    key_fingerprint: str | None = None
    retry_after_s: float | None = None
    message: str | None = None

    def applies(self, now: float, fingerprint: str | None) -> bool:
        if self.key_fingerprint is not None and self.key_fingerprint != fingerprint:
            return False
        if self.start is None:
            self.start = now  # the window opens with the first request it meets
        if now < self.start:
            return False
        return self.duration_s is None or now < self.start + self.duration_s


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, model: FakeModel) -> None:
        super().__init__((model.host, model.requested_port), _Handler)
        self.model = model


class FakeModel:
    """Scriptable Messages API endpoint. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        default: Step | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: str = "claude-sonnet-4-20250514",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.default = default or Step(text="OK.")
        self.model_name = model_name
        self.scripts: list[Script] = []
        self.outages: list[Outage] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._inflight = 0
        self.max_concurrency = 0
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeModel:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() may wait
            name="fake-model",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeModel is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self, api_key: str = "sk-ant-fake-key") -> dict[str, str]:
        """Environment that points a CLI at this endpoint and keeps it offline and fast."""
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": api_key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }

    # -- scripting ---------------------------------------------------------------------

    def add_script(
        self,
        steps: Sequence[Step | StepFactory],
        *,
        cwd: str | os.PathLike[str] | None = None,
        marker: str | None = None,
        name: str | None = None,
        then: Step | None = None,
    ) -> Script:
        if cwd is None and marker is None:
            raise ValueError("a script needs a cwd or a marker to be routed")
        script = Script(
            steps=list(steps),
            cwd=_norm(os.fspath(cwd)) if cwd is not None else None,
            marker=marker,
            name=name or marker or os.fspath(cwd or ""),
        )
        if then is not None:
            script.then = then
        with self._lock:
            self.scripts.append(script)
        return script

    def fail(
        self,
        status: int,
        *,
        for_s: float | None = None,
        after_s: float | None = 0.0,
        api_key: str | None = None,
        retry_after_s: float | None = None,
        message: str | None = None,
    ) -> Outage:
        """Answer `status` (529, 429, 500, ...) to every model request for `for_s` seconds (None:
        until :meth:`clear_outages`), from `after_s` seconds from now (None: from the first model
        request, so a slow CLI start does not eat the window), for every key or only `api_key`,
        with a `retry-after` header when given. Scripts do not advance meanwhile."""
        outage = Outage(
            status=status,
            start=None if after_s is None else time.monotonic() + after_s,
            duration_s=for_s,
            key_fingerprint=key_fingerprint(api_key) if api_key is not None else None,
            retry_after_s=retry_after_s,
            message=message,
        )
        with self._lock:
            self.outages.append(outage)
        return outage

    def clear_outages(self) -> None:
        with self._lock:
            self.outages.clear()

    def outage_for(self, request: RecordedRequest) -> Outage | None:
        now = time.monotonic()
        with self._lock:  # held: a window opening at its first request opens once
            return next(
                (o for o in self.outages if o.applies(now, request.api_key_fingerprint)), None
            )

    def _route(self, request: RecordedRequest) -> Script | None:
        first = request.first_user_text
        cwd = request.cwd
        with self._lock:
            scripts = list(self.scripts)
        for script in scripts:  # markers first: they are the more specific route
            if script.marker is not None and script.marker in first:
                return script
        if cwd is not None:
            for script in scripts:
                if script.cwd is not None and script.cwd == _norm(cwd):
                    return script
        return None

    def _next_step(self, script: Script, request: RecordedRequest) -> Step:
        """Advance the script, inserting a ToolSearch turn for unloaded MCP tools."""
        with script.lock:
            step = script.pending
            if step is None:
                if script.finished:
                    request.step_index = script.cursor
                    return script.then
                entry = script.steps[script.cursor]
                step = entry if isinstance(entry, Step) else entry(request)
            offered = set(request.tool_names)
            missing = [
                t for t in step.mcp_tools if t not in offered and t not in script.searched_tools
            ]
            if missing and TOOL_SEARCH in offered:
                script.pending = step
                script.searched_tools.update(missing)
                request.auto = "tool_search"
                query = "select:" + ",".join(missing)
                return Step(tool_calls=(ToolCall(TOOL_SEARCH, {"query": query}),))
            script.pending = None
            request.step_index = script.cursor
            script.cursor += 1
            return step

    # -- recording ---------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def main_requests(self, script: Script | str | None = None) -> list[RecordedRequest]:
        name = script.name if isinstance(script, Script) else script
        return [r for r in self.requests if r.kind == "main" and (name is None or r.script == name)]

    def unknown_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == "unknown"]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Poll until predicate(self) is true (for tests waiting on a running CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _enter(self) -> None:
        with self._lock:
            self._inflight += 1
            self.max_concurrency = max(self.max_concurrency, self._inflight)

    def _leave(self) -> None:
        with self._lock:
            self._inflight -= 1

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._ids):06d}"

    # -- answering ---------------------------------------------------------------------

    def plan(self, request: RecordedRequest) -> Step:
        """Decide how to answer a /v1/messages request, recording the routing."""
        body = request.body or {}
        is_main = bool(body.get("tools")) or "Primary working directory:" in request.all_text
        request.kind = "main" if is_main else "side"
        if not is_main:
            return self.default
        script = self._route(request)
        if script is None:
            return self.default
        request.script = script.name
        return self._next_step(script, request)

    def build_message(self, step: Step, request: RecordedRequest, raw_size: int) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        for call in step.tool_calls:
            block = {
                "type": "tool_use",
                "id": call.id or self.new_id("toolu"),
                "name": call.name,
                "input": dict(call.input),
            }
            content.append(block)
            request.response_tool_uses.append(block)
        if not content:
            content.append({"type": "text", "text": ""})
        usage = step.usage
        if usage is None:
            out = sum(len(json.dumps(b)) for b in content) // 4
            usage_dict = {
                "input_tokens": max(1, raw_size // 4),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": max(1, out),
            }
        else:
            usage_dict = usage.to_api()
        stop = step.stop_reason or ("tool_use" if step.tool_calls else "end_turn")
        model = str((request.body or {}).get("model") or self.model_name)
        return api.message_body(
            message_id=self.new_id("msg"),
            model=model,
            content=content,
            stop_reason=stop,
            usage=usage_dict,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the default writes every request line to stderr

    # -- plumbing ----------------------------------------------------------------------

    @property
    def model(self) -> FakeModel:
        return self.server.model

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _new_record(self, raw: bytes) -> RecordedRequest:
        headers, fingerprint = redact_headers(dict(self.headers.items()))
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                body = None
        return RecordedRequest(
            method=self.command,
            path=self.path,
            headers=headers,
            body=body,
            api_key_fingerprint=fingerprint,
            started_at=time.time(),
        )

    def _send_json(
        self,
        status: int,
        payload: dict[str, Any],
        record: RecordedRequest,
        *,
        retry_after_s: float | None = None,
        should_retry: bool = False,
    ) -> None:
        data = json.dumps(payload).encode()
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", self.model.new_id("req"))
        if retry_after_s is not None:
            self.send_header("retry-after", f"{retry_after_s:g}")
        if status >= 400:  # a scripted error is final; an outage lets the client retry
            self.send_header("x-should-retry", "true" if should_retry else "false")
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _wait_forever(self) -> None:
        """Hold the connection open until the endpoint stops (scripted hang)."""
        self.model.stopping.wait()
        self.close_connection = True

    # -- routes ------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        record = self._new_record(b"")
        self.model._record(record)
        path = self.path.split("?")[0]
        if path == "/v1/models":
            record.kind = "models"
            model = {"type": "model", "id": self.model.model_name, "display_name": "Fake"}
            page = {"data": [model], "has_more": False, "first_id": None, "last_id": None}
            self._send_json(200, page, record)
        else:
            log.warning("fake model: unknown path GET %s", path)
            self._send_json(404, api.error_body(404, f"Unknown path {path}"), record)
        record.finished_at = time.time()

    def do_POST(self) -> None:  # noqa: N802
        raw = self._read_body()
        record = self._new_record(raw)
        self.model._record(record)
        path = self.path.split("?")[0]
        self.model._enter()
        try:
            if path == "/v1/messages":
                self._messages(record, len(raw))
            elif path == "/v1/messages/count_tokens":
                record.kind = "count_tokens"
                tokens = max(1, len(raw) // 4)
                self._send_json(200, {"input_tokens": tokens}, record)
            else:
                log.warning("fake model: unknown path POST %s", path)
                self._send_json(404, api.error_body(404, f"Unknown path {path}"), record)
        except (BrokenPipeError, ConnectionResetError):
            record.client_disconnected = True
            self.close_connection = True
        finally:
            self.model._leave()
            record.finished_at = time.time()

    def _messages(self, record: RecordedRequest, raw_size: int) -> None:
        if record.body is None:
            self._send_json(400, api.error_body(400, "Body is not a JSON object"), record)
            return
        outage = self.model.outage_for(record)
        if outage is not None:
            record.kind = "outage"
            payload = api.error_body(outage.status, outage.message, self.model.new_id("req"))
            self._send_json(
                outage.status,
                payload,
                record,
                retry_after_s=outage.retry_after_s,
                should_retry=True,
            )
            return
        step = self.model.plan(record)
        if step.delay_s and self.model.stopping.wait(step.delay_s):
            self.close_connection = True
            return
        if step.hang:
            self._wait_forever()
            return
        if step.error_status is not None:
            payload = api.error_body(
                step.error_status, step.error_message, self.model.new_id("req")
            )
            self._send_json(step.error_status, payload, record)
            return
        message = self.model.build_message(step, record, raw_size)
        if not record.body.get("stream"):
            self._send_json(200, message, record)
            return
        self._stream(message, step, record)

    def _stream(self, message: dict[str, Any], step: Step, record: RecordedRequest) -> None:
        record.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", self.model.new_id("req"))
        self.end_headers()
        events: Iterator[bytes] = api.stream_head(message)
        for data in events:
            self._chunk(data)
        for index, block in enumerate(message["content"]):
            for data in api.stream_block(index, block):
                self._chunk(data)
            if step.stall_mid_stream:
                self._wait_forever()
                return
        for data in api.stream_tail(message):
            self._chunk(data)
        with contextlib.suppress(OSError):
            self._chunk(b"")  # terminating zero-length chunk
