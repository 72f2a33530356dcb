"""Landing paused by the target's checkout, kept where every process can see it.

The steward pauses landing while a checkout of the target cannot follow a landing (a person
editing in their main checkout, an untracked file in the way). The pause lives in the store's
event log: `steward.paused` (reason, files, checkout) and `steward.resumed`, recorded only when
the state changes, so `sf status`, the language server and the editor of any process show it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from stoneforge.git.blockers import CheckoutBlock
from stoneforge.models import Event, LandingPause, utcnow
from stoneforge.store import Store

PAUSED = "steward.paused"
RESUMED = "steward.resumed"
#: Files kept in one event; the reason line names the first few and counts the rest.
MAX_FILES = 200


def latest_pause(store: Store) -> LandingPause | None:
    """The pause the latest `steward.paused`/`steward.resumed` event says holds, if any."""
    paused = store.last_event(PAUSED)
    if paused is None:
        return None
    resumed = store.last_event(RESUMED)
    if resumed is not None and resumed.id > paused.id:
        return None
    return pause_of(paused)


def last_change(events: Sequence[Event]) -> Event | None:
    """The last `steward.paused`/`steward.resumed` event among ``events``, if any."""
    return next((e for e in reversed(events) if e.kind in (PAUSED, RESUMED)), None)


def pause_of(event: Event) -> LandingPause | None:
    """The pause a `steward.paused` event records (None for `steward.resumed`)."""
    if event.kind != PAUSED:
        return None
    data = event.data
    since = data.get("since")
    return LandingPause(
        checkout=str(data.get("checkout", "")),
        reason=str(data.get("reason", "")),
        files=[str(f) for f in data.get("files", [])],
        since=datetime.fromisoformat(since) if isinstance(since, str) else event.at,
    )


class PauseState:
    """The steward's pause: records an event and says so only when it changes."""

    def __init__(self, store: Store, note: Callable[[str], None]) -> None:
        self.store = store
        self.note = note
        # A pause left by an earlier steward counts as known: it is resumed once clean.
        self.current: LandingPause | None = latest_pause(store)

    def update(self, block: CheckoutBlock | None) -> None:
        if block is None:
            self._resume()
            return
        files = block.files[:MAX_FILES]
        now = self.current
        if now is not None and (now.reason, now.files, now.checkout) == (
            block.reason,
            files,
            str(block.worktree),
        ):
            return
        pause = LandingPause(
            checkout=str(block.worktree),
            reason=block.reason,
            files=files,
            since=now.since if now is not None else utcnow(),
        )
        self.store.record_event(
            PAUSED,
            "steward",
            None,
            {
                "reason": pause.reason,
                "files": pause.files,
                "checkout": pause.checkout,
                "since": pause.since.isoformat(),
            },
        )
        self.current = pause
        hint = "commit, stash or move them" if block.files else "make it clean"
        self.note(f"{pause.line}; {hint} and landing resumes by itself")

    def _resume(self) -> None:
        if self.current is None:
            return
        checkout = self.current.checkout
        self.store.record_event(RESUMED, "steward", None, {"checkout": checkout})
        self.current = None
        self.note(f"landing resumed: nothing in {checkout} is in the way now")
