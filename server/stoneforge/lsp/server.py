"""The pygls 2.x language server: custom requests, change notifications, diagnostics.

Custom request params arrive as plain dicts (see :class:`StoneforgeProtocol`) and are validated
by the pydantic models in :mod:`stoneforge.lsp.params`; the work itself is a plain function in
:mod:`stoneforge.lsp.handlers`, run on a worker thread so git and SQLite never block the loop.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import attrs
import cattrs
from lsprotocol import types
from pydantic import ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCNotification, LanguageServerProtocol, default_converter

from stoneforge import __version__
from stoneforge.errors import StoneforgeError
from stoneforge.lsp import conflicts
from stoneforge.lsp.board import LeanBoard, RawJson
from stoneforge.lsp.changes import FORECAST_EVENT, ChangeWatcher
from stoneforge.lsp.forecast_diagnostics import ForecastDiagnostics
from stoneforge.lsp.handlers import METHODS, Context, Method
from stoneforge.lsp.orchestration import LspOrchestration
from stoneforge.lsp.params import describe_validation_error
from stoneforge.redact import RedactingFilter
from stoneforge.service import Service

log = logging.getLogger("stoneforge.lsp")

PREFIX = "stoneforge/"
COMMAND_PREFIX = "stoneforge."


class _RawMessage(str):
    """A whole JSON-RPC message, encoded: json.dumps would quote it, so it is written as is."""


@attrs.define
class PlainJson:
    """A result that is plain JSON (dicts, lists, strings, numbers) through and through."""

    value: Any


@attrs.define
class StoneforgeRequest:
    """A custom request whose params stay a plain JSON value (pygls would make namedtuples)."""

    id: int | str
    method: str
    jsonrpc: str
    params: Any = None


@attrs.define
class StoneforgeNotification:
    method: str
    jsonrpc: str
    params: Any = None


def _converter() -> cattrs.Converter:
    converter = default_converter()
    for cls in (StoneforgeRequest, StoneforgeNotification):
        converter.register_structure_hook(cls, lambda obj, c: c(**obj))
    return converter


class StoneforgeProtocol(LanguageServerProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._send_lock = threading.Lock()

    def _send_data(self, data: Any) -> None:
        # Our results and notifications are plain JSON already: hand them to json.dumps as they
        # are, not through cattrs' unstructuring (most of the time of a 10,000-task taskTree).
        result = getattr(data, "result", None)
        if isinstance(result, PlainJson) and isinstance(result.value, RawJson):
            # Encoded already (the lean board's rows, each once): spliced in, not re-encoded.
            data = _RawMessage(
                f'{{"jsonrpc":"{data.jsonrpc}","id":{json.dumps(data.id)},"result":{result.value}}}'
            )
        elif isinstance(result, PlainJson):
            data = {"jsonrpc": data.jsonrpc, "id": data.id, "result": result.value}
        elif isinstance(data, JsonRPCNotification) and data.method.startswith(PREFIX):
            data = {"jsonrpc": data.jsonrpc, "method": data.method, "params": data.params}
        # Responses of handlers on worker threads are written from those threads, notifications
        # from the loop: one message at a time, or a big one can be cut by another.
        with self._send_lock:
            if isinstance(data, _RawMessage):
                self._write_raw(data)
            else:
                super()._send_data(data)

    def _write_raw(self, body: str) -> None:
        """Write one encoded message, framed as pygls frames its own."""
        if self.writer is None:
            log.error("cannot send a message: no transport")
            return
        payload = body.encode(self.CHARSET)
        if self._include_headers:
            header = (
                f"Content-Length: {len(payload)}\r\n"
                f"Content-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n"
            )
            payload = header.encode(self.CHARSET) + payload
        written = self.writer.write(payload)
        if inspect.isawaitable(written):
            asyncio.ensure_future(written)

    def structure_message(self, data: dict[str, Any]) -> Any:
        # Incoming stoneforge/ messages keep their params as plain JSON for pydantic to check.
        # (Outgoing ones, like stoneforge/changed, use pygls' generic message types.)
        method = data.get("method")
        if "jsonrpc" in data and isinstance(method, str) and method.startswith(PREFIX):
            cls = StoneforgeRequest if "id" in data else StoneforgeNotification
            return self._converter.structure(data, cls)
        return super().structure_message(data)


class StoneforgeServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "stoneforge",
            __version__,
            protocol_cls=StoneforgeProtocol,
            converter_factory=_converter,
            text_document_sync_kind=types.TextDocumentSyncKind.Full,
        )
        self.context: Context | None = None
        self.root: Path | None = None
        self.initialized = False
        self.open_problem: str | None = None
        self.watcher: ChangeWatcher | None = None
        self.board: LeanBoard | None = None
        self._forecast_lock = threading.Lock()
        self._forecast_state = "idle"  # or "running", or "again": run once more when done
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forecasts: ForecastDiagnostics | None = None

    # -- workspace -----------------------------------------------------------------------------

    def open_workspace(self, root: Path) -> None:
        """Bind to the repository at ``root``. Nothing is written into a repository that does
        not use Stoneforge yet: it stays unbound until ``stoneforge/init`` asks for it."""
        self.root = root
        try:
            service = Service.attach(root, actor=f"lsp:{_pid()}")
        except StoneforgeError as exc:
            self.open_problem = str(exc)
            self.initialized = False
            log.warning("stoneforge is not available here: %s", exc)
            return
        self._bind(service)

    async def init_workspace(self) -> dict[str, Any]:
        """`sf init` for the open folder, then bind to it and start watching (stoneforge/init)."""
        if self.context is not None:
            return {"repository": str(self.context.service.root), "created": []}
        root = self.root
        if root is None:
            raise JsonRpcInvalidParams("the client sent no workspace folder; open a git repository")
        service, created = await asyncio.to_thread(Service.init, root, f"lsp:{_pid()}")
        log.info("initialised %s: %s", service.root, ", ".join(created) or "nothing new")
        self._bind(service)
        self.start_watching()  # on the loop: the watcher delivers to it
        return {"repository": str(service.root), "created": created}

    def workspace_state(self) -> dict[str, Any]:
        """What the client needs to choose its welcome view (stoneforge/workspace)."""
        if self.context is not None:
            return {
                "repository": str(self.context.service.root),
                "initialized": True,
                "problem": None,
            }
        return {
            "repository": str(self.root) if self.root else None,
            "initialized": False,
            "problem": self.open_problem,
        }

    def _bind(self, service: Service) -> None:
        self.open_problem = None
        self.initialized = True
        self.board = LeanBoard(service)
        self.context = Context(
            service=service, orchestration=LspOrchestration(self, service), board=self.board
        )
        self.forecasts = ForecastDiagnostics(service)

    def start_watching(self) -> None:
        """Follow the store (stoneforge/changed) and compute the first forecast, off the loop."""
        if self.context is None or self.watcher is not None:
            return
        self.watcher = ChangeWatcher(self, self.context.service, self.board)
        self.watcher.start()
        if self.board is not None:  # read the board once now, not in the first taskTree
            self.thread_pool.submit(self.board.tree)
        self._loop = asyncio.get_event_loop()
        self.refresh_forecast_unless_steward(first=True)

    def refresh_forecast_unless_steward(self, *, first: bool = False) -> None:
        """Forecast for the diagnostics on a worker thread, unless a running orchestrator's
        steward does (its `forecast.updated` event then carries the forecast: taken as is).
        Requests that come while one runs make one more run afterwards, not one each."""
        forecasts, context = self.forecasts, self.context
        if forecasts is None or context is None:
            return
        with self._forecast_lock:
            if self._forecast_state != "idle":
                self._forecast_state = "again"
                return
            self._forecast_state = "running"

        def run() -> None:
            again = True
            while again:
                try:
                    self._forecast_once(forecasts, context.service, first)
                finally:
                    with self._forecast_lock:
                        again = self._forecast_state == "again"
                        self._forecast_state = "running" if again else "idle"

        self.thread_pool.submit(run)

    def _forecast_once(self, forecasts: ForecastDiagnostics, service: Service, first: bool) -> None:
        if service.orchestrator_running():
            if not first:
                return  # the steward records its forecast whenever the conflicts change
            latest = service.store.last_event(FORECAST_EVENT)
            if latest is None or not forecasts.use_event(latest.data):
                forecasts.refresh()
        else:
            forecasts.refresh()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.republish_all)

    def require_context(self) -> Context:
        if self.context is None:
            raise JsonRpcInvalidParams(
                self.open_problem or "the server has no workspace folder; open a git repository"
            )
        return self.context

    # -- diagnostics ---------------------------------------------------------------------------

    def publish(self, uri: str) -> None:
        """Publish conflict-marker and forecast diagnostics for one open document."""
        document = self.workspace.get_text_document(uri)
        diagnostics = conflicts.conflict_diagnostics(document.source)
        if self.forecasts is not None:
            diagnostics += self.forecasts.for_document(uri, document.source)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, diagnostics=diagnostics, version=document.version
            )
        )

    def republish_all(self) -> None:
        for uri in list(self.workspace.text_documents):
            self.publish(uri)


def _pid() -> int:
    return os.getpid()


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path))


def _as_object(raw: Any) -> Any:
    """No params, or an empty array, mean an empty object: Neovim's client (vim.json) encodes an
    empty Lua table `{}` as `[]`, and JSON-RPC allows omitting params."""
    return {} if raw is None or raw == [] else raw


def _check_no_params(name: str, raw: Any) -> None:
    if not isinstance(_as_object(raw), dict):
        raise JsonRpcInvalidParams(
            f"invalid params for {PREFIX}{name}: expected an object, got {type(raw).__name__}"
        )


def _validate(name: str, method: Method, raw: Any) -> Any:
    full = PREFIX + name
    raw = _as_object(raw)
    if not isinstance(raw, dict):
        raise JsonRpcInvalidParams(
            f"invalid params for {full}: expected an object, got {type(raw).__name__}"
        )
    try:
        return method.params.model_validate(raw)
    except ValidationError as exc:
        raise JsonRpcInvalidParams(describe_validation_error(full, exc)) from None


def _as_jsonrpc_error(name: str, exc: Exception) -> JsonRpcException:
    """Every failure becomes a readable JSON-RPC error; the server survives any request."""
    if isinstance(exc, StoneforgeError):
        return JsonRpcInvalidParams(str(exc))
    if isinstance(exc, JsonRpcException):
        return exc
    log.error("%s%s failed", PREFIX, name, exc_info=exc)
    return JsonRpcException(f"{PREFIX}{name} failed: {type(exc).__name__}: {exc}")


def _call(server: StoneforgeServer, name: str, method: Method, raw: Any) -> Any:
    params = _validate(name, method, raw)
    context = server.require_context()
    try:
        return PlainJson(method.handler(context, params))
    except Exception as exc:
        raise _as_jsonrpc_error(name, exc) from None


async def _call_async(server: StoneforgeServer, name: str, method: Method, raw: Any) -> Any:
    params = _validate(name, method, raw)
    context = server.require_context()
    try:
        return PlainJson(await method.handler(context, params))
    except Exception as exc:
        raise _as_jsonrpc_error(name, exc) from None


def _register(server: StoneforgeServer, name: str, method: Method) -> None:
    if not method.blocking:
        # Coroutines run on the server's loop (the orchestrator lives there).
        @server.feature(PREFIX + name)
        async def async_request(params: Any) -> Any:
            return await _call_async(server, name, method, params)

        @server.command(COMMAND_PREFIX + name)
        async def async_command(*args: Any) -> Any:
            return await _call_async(server, name, method, args[0] if args else {})

        return

    @server.feature(PREFIX + name)
    @server.thread()
    def request(params: Any) -> Any:
        return _call(server, name, method, params)

    @server.command(COMMAND_PREFIX + name)
    @server.thread()
    def command(*args: Any) -> Any:
        return _call(server, name, method, args[0] if args else {})


async def _init(server: StoneforgeServer) -> Any:
    try:
        return await server.init_workspace()
    except Exception as exc:
        raise _as_jsonrpc_error("init", exc) from None


def build_server() -> StoneforgeServer:
    server = StoneforgeServer()
    for name, method in METHODS.items():
        _register(server, name, method)

    @server.feature(types.INITIALIZE)
    def on_initialize(params: types.InitializeParams) -> None:
        root: Path | None = None
        if params.workspace_folders:
            root = uri_to_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            root = uri_to_path(params.root_uri)
        elif params.root_path:
            root = Path(params.root_path)
        if root is not None:
            server.open_workspace(root)
        else:
            server.open_problem = "the client sent no workspace folder; open a git repository"

    @server.feature(types.INITIALIZED)
    def on_initialized(params: types.InitializedParams) -> None:
        server.start_watching()

    # These two work before the folder is set up, so they are not METHODS (which need it).
    @server.feature(PREFIX + "init")
    async def init(params: Any) -> Any:
        _check_no_params("init", params)
        return await _init(server)

    @server.command(COMMAND_PREFIX + "init")
    async def init_command(*args: Any) -> Any:
        return await _init(server)

    @server.feature(PREFIX + "workspace")
    def workspace(params: Any) -> Any:
        _check_no_params("workspace", params)
        return server.workspace_state()

    @server.feature(types.SHUTDOWN)
    async def on_shutdown(params: Any) -> None:
        # A running orchestrator stops gracefully: sessions end and their work is saved.
        if server.context is not None and server.context.orchestration is not None:
            await server.context.orchestration.stop()
        if server.watcher is not None:
            server.watcher.stop()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        server.publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        server.publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(params: types.CodeActionParams) -> list[types.CodeAction]:
        document = server.workspace.get_text_document(params.text_document.uri)
        return conflicts.conflict_code_actions(
            document.source, params.text_document.uri, params.range
        )

    return server


def _protocol_stdout() -> BinaryIO:
    """The JSON-RPC stream gets a file descriptor of its own; fd 1 and ``sys.stdout`` then
    point at stderr, so nothing else in this process or its children (a library's print, Ray
    forwarding worker logs to the driver, a child that inherits fd 1) can cut into a message."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return protocol


def main() -> None:
    """`sf lsp`: serve on stdin/stdout; logs go to stderr, never to stdout."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("pygls").setLevel(logging.WARNING)
    server = build_server()
    # A long-lived server that answers with large trees of small objects: move what start-up
    # built out of the collector's way and collect young objects less often (a third of a
    # 10,000-task taskTree went to the cyclic GC).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    server.start_io(stdout=_protocol_stdout())
    if server.watcher is not None:
        server.watcher.stop()
    asyncio.set_event_loop(None)
