"""`sf serve` in a terminal: the orchestrator in the foreground, a live view, graceful Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import sys

import anyio
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from stoneforge.live_view import render_view
from stoneforge.redact import RedactingFilter
from stoneforge.service import Service

REFRESH_S = 0.25
#: Exit status after a forced stop (a second Ctrl-C), as a shell reports death by SIGINT.
EXIT_FORCED = 130


def _configure_logging(console: Console) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def serve_foreground(
    service: Service,
    *,
    max_concurrent: int | None = None,
    until_idle: bool = False,
    agent_env: dict[str, str] | None = None,
    console: Console | None = None,
    backend: str | None = None,
) -> None:
    console = console or Console(highlight=False)
    _configure_logging(console)
    sandbox = service.sandbox_status()
    if sandbox.warning:  # said before anything runs, and on stderr, so it is not missed
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]WARNING:[/] {escape(sandbox.warning)}"
        )
    orchestrator = service.orchestrator(
        max_concurrent=max_concurrent, until_idle=until_idle, agent_env=agent_env, backend=backend
    )
    interactive = console.is_terminal
    if not interactive:  # a pipe or CI: each event as a plain line instead of a live table
        orchestrator.on_note = console.print

    async def show_live() -> None:
        with Live(render_view(orchestrator.view()), console=console, transient=False) as live:
            while True:
                await anyio.sleep(REFRESH_S)
                live.update(render_view(orchestrator.view()))

    forced = False

    async def handle_signals(group: anyio.abc.TaskGroup) -> None:
        nonlocal forced
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            count = 0
            async for _ in signals:
                count += 1
                if count == 1:
                    orchestrator.note(
                        "stopping: sessions end and their work is saved (Ctrl-C again to force)"
                    )
                    orchestrator.request_stop()
                else:  # forced: kill the agents, leave their work to the next start's recovery
                    orchestrator.note("forced stop: agents killed")
                    orchestrator.force_stop()
                    forced = True
                    group.cancel_scope.cancel()
                    return

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(handle_signals, group)
            if interactive:
                group.start_soon(show_live)
            await orchestrator.run()
            group.cancel_scope.cancel()

    anyio.run(main)
    if forced:
        # "At once": skip the interpreter's teardown, which takes a second or more on a busy
        # machine. Every store write is committed and the agents are dead by now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FORCED)
