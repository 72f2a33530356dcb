"""The store watcher: every event another connection commits is handed over, in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from stoneforge.models import Event
from stoneforge.store import PlannedTask, Store
from stoneforge.store_watch import StoreWatcher


class Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.calls = 0
        self._changed = threading.Condition()

    def __call__(self, events: list[Event]) -> None:
        with self._changed:
            self.events.extend(events)
            self.calls += 1
            self._changed.notify_all()

    def wait_for(self, last_id: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.events or self.events[-1].id < last_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)


def burst(store: Store, tasks: int) -> None:
    """One commit that records ``tasks`` + 1 events (a plan and its tasks)."""
    store.create_plan_with_tasks(
        "big", None, [PlannedTask(key=f"k{i}", title=f"t{i}") for i in range(tasks)]
    )


def test_a_burst_larger_than_a_page_is_delivered_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    before = store.last_event_id()
    got = Collector()
    # Small pages keep the test fast; the default (5,000) behaves alike (bench_wakeups.py).
    watcher = StoreWatcher(path, got, debounce_s=0, probe_interval_s=0.01, page_size=100).start()
    try:
        burst(store, 250)  # one commit, more events than two pages
        last = store.last_event_id()
        got.wait_for(last)
    finally:
        watcher.stop()
    ids = [e.id for e in got.events]
    assert ids == list(range(before + 1, last + 1)), (
        f"delivered {len(ids)} of {last - before} events (last id {ids[-1] if ids else None})"
    )
    assert got.calls >= 3  # page after page, not one list of everything


def test_small_pages_still_deliver_every_event_of_several_bursts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    before = store.last_event_id()
    got = Collector()
    watcher = StoreWatcher(path, got, debounce_s=0, probe_interval_s=0.01, page_size=7).start()
    try:
        for _ in range(3):
            burst(store, 50)
        store.create_task("after the bursts")
        last = store.last_event_id()
        got.wait_for(last)
    finally:
        watcher.stop()
    assert [e.id for e in got.events] == list(range(before + 1, last + 1))
    assert got.events[-1].kind == "task.created"


def test_a_commit_made_before_the_thread_first_probes_is_delivered(tmp_path: Path) -> None:
    """The editor binds a watcher and at once creates a task; on a loaded machine the watcher's
    thread may first run after that commit. The change counts from when the watcher was made."""
    path = tmp_path / "state.db"
    store = Store(path)
    got = Collector()
    watcher = StoreWatcher(path, got, debounce_s=0, probe_interval_s=0.01)
    task = store.create_task("made before the thread ran")  # the thread has not started yet
    watcher.start()
    try:
        got.wait_for(store.last_event_id(), timeout=5)
    finally:
        watcher.stop()
    assert [(e.kind, e.entity_id) for e in got.events] == [("task.created", task.id)]
