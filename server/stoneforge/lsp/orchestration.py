"""The orchestrator inside the language server: started by `stoneforge/serve`, on the server's loop.

It reports work-done progress while it serves ("2/6 agents busy, 3 queued") and while the steward
checks a merge request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

from stoneforge.errors import InvalidTransitionError
from stoneforge.orchestrator.daemon import Orchestrator
from stoneforge.service import Service

if TYPE_CHECKING:
    from stoneforge.lsp.server import StoneforgeServer

log = logging.getLogger("stoneforge.lsp.orchestration")


class LspOrchestration:
    """Implements :class:`stoneforge.lsp.handlers.Orchestration` for the server."""

    def __init__(self, server: StoneforgeServer, service: Service) -> None:
        self.server = server
        self.service = service
        self.orchestrator: Orchestrator | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._merges: asyncio.Queue[str | None] = asyncio.Queue()
        self._progress_task: asyncio.Task[None] | None = None

    def is_serving(self) -> bool:
        return self._task is not None and not self._task.done()

    def max_concurrent(self) -> int:
        if self.orchestrator is not None:
            return self.orchestrator.max_concurrent
        return self.service.config.orchestrator.maxConcurrent

    async def start(self, max_concurrent: int | None) -> None:
        """Start serving; returns once the orchestrator holds the lease, or raises why not."""
        if self.is_serving():
            raise InvalidTransitionError("the orchestrator is already running in this server")
        orchestrator = self.service.orchestrator(
            max_concurrent=max_concurrent, on_change=self._changed.set
        )
        orchestrator.on_merging = self._merging
        self.orchestrator = orchestrator
        self._task = asyncio.create_task(orchestrator.run())
        started = asyncio.create_task(orchestrator.started.wait())
        done, _ = await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            started.cancel()
            self._task.result()  # re-raises LeaseHeldError and friends
        self._progress_task = asyncio.create_task(self._report_progress(orchestrator))

    async def stop(self) -> None:
        if self.orchestrator is None or self._task is None:
            return
        self.orchestrator.request_stop()
        with contextlib.suppress(Exception):
            await self._task
        self._changed.set()
        if self._progress_task is not None:
            with contextlib.suppress(Exception):
                await self._progress_task

    # -- progress ------------------------------------------------------------------------------

    def _merging(self, current: str | None) -> None:
        self._merges.put_nowait(current)
        self._changed.set()

    def _supports_progress(self) -> bool:
        window = self.server.client_capabilities.window
        return bool(window and window.work_done_progress)

    async def _begin(self, title: str, message: str) -> str | None:
        if not self._supports_progress():
            return None
        token = f"stoneforge-{uuid.uuid4().hex[:8]}"
        try:
            await self.server.work_done_progress.create_async(token)
        except Exception:
            log.warning("the client refused a progress token")
            return None
        self.server.work_done_progress.begin(
            token, types.WorkDoneProgressBegin(title=title, message=message, cancellable=False)
        )
        return token

    async def _report_progress(self, orchestrator: Orchestrator) -> None:
        serve_token = await self._begin("Stoneforge", "orchestrator started")
        merge_token: str | None = None
        last = ""
        while self.is_serving() or not self._merges.empty():
            self._changed.clear()
            while not self._merges.empty():  # merge checks start and end in order
                merging = self._merges.get_nowait()
                if merge_token:
                    self.server.work_done_progress.end(
                        merge_token, types.WorkDoneProgressEnd(message="merge check done")
                    )
                    merge_token = None
                if merging:
                    merge_token = await self._begin(
                        "Stoneforge merge queue", f"checking merge request {merging}"
                    )
            view = orchestrator.view()
            text = f"{len(view.slots)}/{view.max_concurrent} agents busy, {view.queued} queued"
            if serve_token and text != last:
                self.server.work_done_progress.report(
                    serve_token, types.WorkDoneProgressReport(message=text)
                )
                last = text
            if not self.is_serving():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)
        for token in (merge_token, serve_token):
            if token:
                self.server.work_done_progress.end(
                    token, types.WorkDoneProgressEnd(message="orchestrator stopped")
                )
