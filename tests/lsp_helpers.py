"""Drive the real `sf lsp` process over stdio with pytest-lsp's client."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from stoneforge.service import Service

SERVER_COMMAND = [sys.executable, "-m", "stoneforge", "lsp", "--stdio"]


def plain(value: Any) -> Any:
    """pygls hands unknown results over as namedtuples; turn them back into JSON values."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@asynccontextmanager
async def lsp_session(
    root: Path, env: dict[str, str] | None = None, *, init: bool = True
) -> AsyncIterator[LanguageClient]:
    """A server on ``root``; with ``init`` the repository is set up first (`sf init`), since
    the server itself writes nothing into a repository that does not use Stoneforge yet."""
    if init:
        Service.init(root)[0].close()
    config = ClientServerConfig(server_command=SERVER_COMMAND, server_env=env)
    client = await config.start()
    assert isinstance(client, LanguageClient)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )
    try:
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


async def request(client: LanguageClient, method: str, params: Any = None) -> Any:
    result = await client.protocol.send_request_async(method, params if params is not None else {})
    return plain(result)


class Changes:
    """Every `stoneforge/changed` the client receives, in order.

    Waiting for "the next notification" races with one still in flight for an earlier write;
    tests look for the notification that carries what they expect instead.
    """

    def __init__(self, client: LanguageClient) -> None:
        self.seen: list[dict[str, Any]] = []

        @client.feature("stoneforge/changed")
        def on_changed(params: Any) -> None:
            self.seen.append(plain(params))

    def mark(self) -> int:
        """Where the notifications after this moment start (for ``until(since=...)``)."""
        return len(self.seen)

    async def until(self, check: Any, timeout_s: float = 15.0, *, since: int = 0) -> dict[str, Any]:
        """The first notification from ``since`` on (old or new) for which ``check`` holds."""
        for _ in range(int(timeout_s / 0.05)):
            for params in self.seen[since:]:
                if check(params):
                    return params
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching stoneforge/changed among {self.seen[since:]}")

    async def carrying(self, kind: str, entity_id: str | None, *, since: int = 0) -> dict[str, Any]:
        """The first notification from ``since`` on that names the change ``(kind, entity_id)``."""
        return await self.until(
            lambda p: any((c["kind"], c["id"]) == (kind, entity_id) for c in p["changes"]),
            since=since,
        )
