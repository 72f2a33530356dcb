"""`stoneforge/changed`: tell the client whenever the store changes, whoever changed it.

A watcher thread with its own store connection probes SQLite's ``data_version`` (a counter that
moves when any other connection commits; no table is read) and, when it moves, reads only the new
rows of the event log. Changes are debounced into one notification. This catches the CLI, a
`sf serve` in a terminal and this server's own writes alike.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from stoneforge.models import Event
from stoneforge.service import Service
from stoneforge.store import Store

if TYPE_CHECKING:
    from stoneforge.lsp.server import StoneforgeServer

log = logging.getLogger("stoneforge.lsp.changes")

CHANGED = "stoneforge/changed"
PROBE_INTERVAL_S = 0.1
DEBOUNCE_S = 0.1
# Events that change what a forecast would say.
FORECAST_KINDS = {"task.updated", "mr.created", "mr.updated", "forecast.updated", "worker.commit"}


def summarize(events: list[Event]) -> list[dict[str, Any]]:
    """One entry per (kind, entity, id), in first-seen order."""
    seen: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for event in events:
        key = (event.kind, event.entity, event.entity_id)
        if key not in seen:
            seen[key] = {"kind": event.kind, "entity": event.entity, "id": event.entity_id}
    return list(seen.values())


def user_messages(events: list[Event]) -> list[tuple[types.MessageType, str]]:
    """What deserves a pop-up: a failed task, a merge request waiting for approval."""
    messages = []
    for event in events:
        status = event.data.get("status")
        if event.entity == "task" and status == "failed":
            note = event.data.get("note") or ""
            messages.append(
                (types.MessageType.Error, f"Stoneforge: task {event.entity_id} failed. {note}")
            )
        elif event.entity == "merge_request" and status == "awaiting_approval":
            messages.append(
                (
                    types.MessageType.Info,
                    f"Stoneforge: merge request {event.entity_id} passed its checks and "
                    "waits for your approval.",
                )
            )
    return messages


class ChangeWatcher:
    def __init__(self, server: StoneforgeServer, service: Service) -> None:
        self.server = server
        self.loop = asyncio.get_event_loop()
        # Its own connection: data_version only moves for commits made by *other* connections,
        # and this one never writes.
        self.store = Store(service.store.path, actor=service.store.actor)
        self.last_id = self.store.last_event_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stoneforge-changes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        version = self.store.data_version()
        while not self._stop.wait(PROBE_INTERVAL_S):
            try:
                current = self.store.data_version()
                if current == version:
                    continue
                version = current
                self._stop.wait(DEBOUNCE_S)  # let a burst of writes finish
                events = self.store.events_since(self.last_id, limit=5000)
                if not events:
                    continue
                self.last_id = events[-1].id
                self._deliver(events)
            except Exception:  # keep watching whatever one round did
                log.exception("change watcher round failed")
        self.store.close()

    def _deliver(self, events: list[Event]) -> None:
        payload = {"lastEventId": self.last_id, "changes": summarize(events)}
        self.loop.call_soon_threadsafe(self.server.protocol.notify, CHANGED, payload)
        for kind, text in user_messages(events):
            self.loop.call_soon_threadsafe(
                self.server.window_show_message,
                types.ShowMessageParams(type=kind, message=text),
            )
        if self.server.forecasts is not None and any(e.kind in FORECAST_KINDS for e in events):
            self.server.forecasts.refresh()
            self.loop.call_soon_threadsafe(self.server.republish_all)
