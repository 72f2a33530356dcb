"""`stoneforge/changed`: tell the client whenever the store changes, whoever changed it.

A :class:`~stoneforge.store_watch.StoreWatcher` hands over the new rows of the event log whenever
any connection commits (the CLI, a `sf serve` in a terminal, this server's own writes alike);
they are debounced into one notification.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from stoneforge.lsp.board import LeanBoard
from stoneforge.models import Event
from stoneforge.orchestrator import provider_status
from stoneforge.orchestrator.pause import last_change, pause_of
from stoneforge.service import Service
from stoneforge.store_watch import StoreWatcher

if TYPE_CHECKING:
    from stoneforge.lsp.server import StoneforgeServer

CHANGED = "stoneforge/changed"
#: The dispatcher's record of the plan and day budgets that hold dispatch back (issue 15).
BUDGET_HOLDS = "budget.holds"
#: At most one notification per this period; a change after a quiet spell goes out at once.
DEBOUNCE_S = 0.1
#: How often the store's data_version is probed: a change reaches the editor within about this
#: (the probe reads no table: a few microseconds of a thread that sleeps the rest).
PROBE_INTERVAL_S = 0.002
# Changes of these entities can change what a forecast would say (a branch starts, lands, ends).
FORECAST_ENTITIES = {"task", "merge_request"}
#: The steward's forecast, with the conflicting pairs and their lines (see steward/forecast.py).
FORECAST_EVENT = "forecast.updated"


def summarize(events: list[Event]) -> list[dict[str, Any]]:
    """One entry per (kind, entity, id), in first-seen order."""
    seen: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for event in events:
        key = (event.kind, event.entity, event.entity_id)
        if key not in seen:
            seen[key] = {"kind": event.kind, "entity": event.entity, "id": event.entity_id}
    return list(seen.values())


def changed_payload(events: list[Event]) -> dict[str, Any]:
    """The `stoneforge/changed` params for a batch of new events."""
    payload: dict[str, Any] = {"lastEventId": events[-1].id, "changes": summarize(events)}
    change = last_change(events)
    if change is not None:  # landing paused or resumed: the client needs no extra request
        pause = pause_of(change)
        payload["landingPaused"] = pause.wire() if pause is not None else None
    outage_change = provider_status.last_change(events)
    if outage_change is not None:  # provider unavailable (with its next try), or back
        outage = provider_status.outage_of(outage_change)
        payload["providerUnavailable"] = outage.wire() if outage is not None else None
    holds = next((e for e in reversed(events) if e.kind == BUDGET_HOLDS), None)
    if holds is not None:  # the plan and day budgets holding dispatch back changed
        payload["budgetHolds"] = holds.data.get("holds", [])
    return payload


def user_messages(events: list[Event]) -> list[tuple[types.MessageType, str]]:
    """What deserves a pop-up: a failed task, a task stopped at its budget, a merge request
    waiting for a person."""
    messages = []
    for event in events:
        status = event.data.get("status")
        if event.entity == "task" and status == "failed":
            note = event.data.get("note") or ""
            messages.append(
                (types.MessageType.Error, f"Stoneforge: task {event.entity_id} failed. {note}")
            )
        elif event.entity == "task" and status == "budget_exceeded":
            note = event.data.get("note") or ""
            messages.append(
                (types.MessageType.Warning, f"Stoneforge: task {event.entity_id} stopped. {note}")
            )
        elif event.entity == "merge_request" and status == "awaiting_approval":
            if event.data.get("from") == "reviewing":  # the review did not approve it
                why = event.data.get("reason") or "the steward's review did not approve it"
                text = f"Stoneforge: merge request {event.entity_id} waits for your decision: {why}"
            else:
                text = (
                    f"Stoneforge: merge request {event.entity_id} passed its checks and "
                    "waits for your approval."
                )
            messages.append((types.MessageType.Info, text))
    return messages


class ChangeWatcher:
    """Forwards store events to the client as debounced `stoneforge/changed` notifications."""

    def __init__(
        self, server: StoneforgeServer, service: Service, board: LeanBoard | None = None
    ) -> None:
        self.server = server
        self.board = board
        self.loop = asyncio.get_event_loop()  # called on the server's loop thread
        self.watcher = StoreWatcher(
            service.store.path,
            self._deliver,
            debounce_s=DEBOUNCE_S,
            probe_interval_s=PROBE_INTERVAL_S,
            name="stoneforge-changes",
        )

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    def _deliver(self, events: list[Event]) -> None:
        payload = changed_payload(events)
        if self.board is not None:  # the changed lean rows, and the versions they go between
            payload.update(self.board.advance())
        self.loop.call_soon_threadsafe(self.server.protocol.notify, CHANGED, payload)
        for kind, text in user_messages(events):
            self.loop.call_soon_threadsafe(
                self.server.window_show_message,
                types.ShowMessageParams(type=kind, message=text),
            )
        forecasts = self.server.forecasts
        if forecasts is None:
            return
        steward = next((e for e in reversed(events) if e.kind == FORECAST_EVENT), None)
        if steward is not None and forecasts.use_event(steward.data):
            self.loop.call_soon_threadsafe(self.server.republish_all)
        elif any(e.entity in FORECAST_ENTITIES for e in events):
            # No steward forecast in this batch: forecast here only when no steward runs (a
            # running one records its forecast whenever the conflicts change), off this thread.
            self.server.refresh_forecast_unless_steward()
