"""Notice changes other processes make to the store, without polling the state.

A thread with its own connection probes SQLite's ``data_version`` (a counter that moves only when
another connection commits; it reads no table) and, when it moves, hands the new rows of the
event log to a callback (every one, in order, a page at a time). The language server (to tell the editor) and the orchestrator (to wake
the dispatcher when the CLI adds a task) both use it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stoneforge.models import Event
from stoneforge.store import Store

log = logging.getLogger("stoneforge.store_watch")

PROBE_INTERVAL_S = 0.1
DEBOUNCE_S = 0.05
#: Events read (and handed over) at a time; a bigger burst is delivered page after page.
PAGE_SIZE = 5000


class StoreWatcher:
    def __init__(
        self,
        db_path: Path,
        on_events: Callable[[list[Event]], None],
        *,
        debounce_s: float = DEBOUNCE_S,
        probe_interval_s: float = PROBE_INTERVAL_S,
        page_size: int = PAGE_SIZE,
        name: str = "stoneforge-store-watch",
    ) -> None:
        self.on_events = on_events
        self.debounce_s = debounce_s
        self.probe_interval_s = probe_interval_s
        self.page_size = page_size
        # Its own connection: data_version moves for commits of every *other* connection,
        # and this one never writes.
        self.store = Store(db_path, actor="watcher")
        # The baseline is taken here, not when the thread first runs: a commit made after the
        # watcher exists but before a busy machine schedules its thread is still a change.
        self._version = self.store.data_version()
        self.last_id = self.store.last_event_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> StoreWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        version = self._version
        last_delivery = -math.inf
        while not self._stop.wait(self.probe_interval_s):
            try:
                current = self.store.data_version()
                if current == version:
                    continue
                version = current
                # At most one delivery per debounce period: a change after a quiet spell goes
                # out at once; the rest of a burst is gathered until the period is over.
                wait = last_delivery + self.debounce_s - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                self._deliver_all()
                last_delivery = time.monotonic()
            except Exception:  # keep watching whatever one round did
                log.exception("store watcher round failed")
        self.store.close()

    def _deliver_all(self) -> None:
        """Hand over every event after the last one delivered, in order, a page at a time.

        All of a burst now, not the first page until the next commit moves data_version again.
        """
        while not self._stop.is_set():
            events = self.store.events_since(self.last_id, limit=self.page_size)
            if not events:
                return
            self.last_id = events[-1].id
            self.on_events(events)
            if len(events) < self.page_size:
                return
