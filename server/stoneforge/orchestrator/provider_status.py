"""Provider unavailable, kept where every process can see it (like a paused landing).

The dispatcher records `provider.unavailable` (reason, next try) each time that changes and
`provider.available` when sessions may start again, so `sf status`, the language server and
the editor of any process show "provider unavailable, next try 00:41:10".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from stoneforge.models import Event, ProviderOutage, utcnow
from stoneforge.orchestrator.provider_health import Unavailable
from stoneforge.store import Store

UNAVAILABLE = "provider.unavailable"
AVAILABLE = "provider.available"


def latest_outage(store: Store) -> ProviderOutage | None:
    """The outage the latest `provider.*` event says holds, if any."""
    down = store.last_event(UNAVAILABLE)
    if down is None:
        return None
    up = store.last_event(AVAILABLE)
    if up is not None and up.id > down.id:
        return None
    return outage_of(down)


def last_change(events: Sequence[Event]) -> Event | None:
    return next((e for e in reversed(events) if e.kind in (UNAVAILABLE, AVAILABLE)), None)


def outage_of(event: Event) -> ProviderOutage | None:
    if event.kind != UNAVAILABLE:
        return None
    data = event.data

    def when(key: str) -> datetime | None:
        value = data.get(key)
        return datetime.fromisoformat(value) if isinstance(value, str) else None

    return ProviderOutage(
        reason=str(data.get("reason", "")),
        next_try_at=when("nextTryAt"),
        since=when("since") or event.at,
        line=str(data.get("line", "provider unavailable")),
    )


class ProviderStatus:
    """The dispatcher's published provider state: an event only when it changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.current: ProviderOutage | None = latest_outage(store)  # left by an earlier run

    def update(self, state: Unavailable | None) -> None:
        if state is None:
            if self.current is not None:
                self.store.record_event(AVAILABLE, "provider", None, {})
                self.current = None
            return
        now = self.current
        if now is not None and (now.reason, now.next_try_at, now.line) == (
            state.reason,
            state.next_try_at,
            state.line,
        ):
            return
        outage = ProviderOutage(
            reason=state.reason,
            next_try_at=state.next_try_at,
            since=now.since if now is not None else utcnow(),
            line=state.line,
        )
        self.store.record_event(UNAVAILABLE, "provider", None, outage.wire())
        self.current = outage
