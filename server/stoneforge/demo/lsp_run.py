"""`sf demo --lsp`: the same demo, driven through the language server as an editor would.

The plan and tasks are created with `stoneforge/createPlan` and `stoneforge/createTask`, the
orchestrator runs inside `sf lsp` after `stoneforge/serve`, and progress arrives as `$/progress`
and `stoneforge/changed` notifications, exactly what the VS Code extension sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import BaseLanguageClient
from rich.console import Console
from rich.panel import Panel

from stoneforge.demo.fake_model import FakeModel
from stoneforge.demo.project import DEMO_TASKS, GIT_IDENTITY, demo_config, make_project
from stoneforge.demo.run import BANNER, DEMO_KEY, DemoResult, summarize
from stoneforge.demo.scripts import install
from stoneforge.git.slug import task_branch
from stoneforge.service import Service

IDLE_TIMEOUT_S = 300.0


def _plain(value: Any) -> Any:
    """pygls hands unknown results over as namedtuples; turn them back into JSON values."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class DemoClient(BaseLanguageClient):
    def __init__(self, console: Console) -> None:
        super().__init__("stoneforge-demo", "1")
        self.console = console
        self.changed = asyncio.Event()

        @self.feature("stoneforge/changed")
        def on_changed(params: Any) -> None:
            self.changed.set()

        @self.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_create(params: Any) -> None:
            return None

        @self.feature(types.PROGRESS)
        def on_progress(params: Any) -> None:
            value = _plain(params.value) if params.value is not None else {}
            if isinstance(value, dict) and value.get("message"):
                self.console.print(
                    f"[dim]$/progress[/dim] {value.get('title') or ''} {value['message']}"
                )

        @self.feature(types.WINDOW_SHOW_MESSAGE)
        def on_message(params: types.ShowMessageParams) -> None:
            self.console.print(f"[bold]window/showMessage[/bold] {params.message}")

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return _plain(await self.protocol.send_request_async(method, params or {}))


async def _drain(stream: asyncio.StreamReader | None) -> None:
    # The server logs to stderr; read it so a full pipe never blocks the server.
    if stream is None:
        return
    while await stream.readline():
        pass


async def _drive(root: Path, model: FakeModel, console: Console) -> None:
    client = DemoClient(console)
    env = {**os.environ, **model.env(DEMO_KEY), **GIT_IDENTITY}
    await client.start_io(sys.executable, "-m", "stoneforge", "lsp", "--stdio", env=env, cwd=root)
    drain = asyncio.create_task(_drain(client._server.stderr if client._server else None))
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    window=types.WindowClientCapabilities(work_done_progress=True)
                ),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            )
        )
        client.initialized(types.InitializedParams())
        plan = await client.call("stoneforge/createPlan", {"title": "Demo sprint"})
        ids: dict[str, str] = {}
        for spec in DEMO_TASKS:
            task = await client.call(
                "stoneforge/createTask",
                {
                    "title": spec.title,
                    "description": spec.description,
                    "planId": plan["id"],
                    "priority": spec.priority,
                    "dependsOn": [ids[key] for key in spec.depends_on],
                },
            )
            ids[spec.key] = task["id"]
            console.print(f"stoneforge/createTask -> {task['id']} {task['title']}")
        await client.call("stoneforge/activatePlan", {"planId": plan["id"]})
        titles = {spec.key: spec.title for spec in DEMO_TASKS}
        install(model, ids, {key: task_branch(ids[key], titles[key]) for key in ids})
        await client.call("stoneforge/serve", {})
        console.print("stoneforge/serve -> the orchestrator runs inside the language server")
        await asyncio.wait_for(_until_idle(client), IDLE_TIMEOUT_S)
        await client.call("stoneforge/stop")
        await client.shutdown_async(None)
        client.exit(None)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 15)
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
        drain.cancel()


async def _until_idle(client: DemoClient) -> None:
    """Wait on `stoneforge/changed` until no task is open or in progress or in review."""
    while True:
        client.changed.clear()
        status = await client.call("stoneforge/status")
        by_status = status["tasksByStatus"]
        if not any(by_status.get(s) for s in ("open", "in_progress", "review")):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.changed.wait(), 5.0)


def run_demo_lsp(
    directory: Path | None = None, *, keep: bool = False, console: Console | None = None
) -> DemoResult:
    console = console or Console(highlight=False)
    console.print(Panel(BANNER + "\nDriven through the language server (`sf lsp`).", expand=False))
    base = directory.resolve() if directory else Path(tempfile.mkdtemp(prefix="stoneforge-demo-"))
    root = base / "calculator"
    if root.exists():
        raise SystemExit(f"{root} already exists; pass another --dir")
    try:
        make_project(root)
        (root / ".stoneforge").mkdir(exist_ok=True)
        (root / ".stoneforge" / "config.yaml").write_text(demo_config())
        with FakeModel() as model:
            asyncio.run(_drive(root, model, console))
        with Service.open(root, actor="demo") as service:
            return summarize(service, console)
    finally:
        if keep:
            console.print(f"\nkept: {root}")
        else:
            shutil.rmtree(base if directory is None else root, ignore_errors=True)
