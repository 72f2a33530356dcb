"""Benchmark: steward wake-ups and store-watcher bursts, the old way beside ours in one run.

1. Steward and dispatcher rounds caused by 1,000 token-count writes (a worker's
   `session.updated`), with a real orchestrator, store watcher and steward on a real repository
   and store: ours (wake each only for events that can change its queue) beside the old rule
   (wake both for every delivery of the watcher), each in its own orchestrator, fed by the same
   kind of writes.
2. The store watcher on one commit of 12,000 events: ours (page after page) beside the old one
   (the first 5,000 only; the rest waited for the next commit), both watching the same burst.
3. On the board that burst made (11,999 tasks, 6 in progress): the steward forecast's read of the
   active branches, the old way (`list_tasks()` of the whole board, filtered) beside ours
   (`active_branches()`, one indexed SELECT, on the steward's own connection in a thread).

Run: .venv/bin/python bench/bench_wakeups.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio

from stoneforge.config import StoneforgeConfig
from stoneforge.models import Event, SessionRole, TaskStatus
from stoneforge.orchestrator.daemon import Orchestrator
from stoneforge.store import PlannedTask, Store
from stoneforge.store_watch import StoreWatcher

TOKEN_WRITES = 1000
BURST = 12_000
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


class NoAgents:
    """No task here is dispatched and nothing conflicts: no agent is ever opened."""

    name = "none"

    def open(self, spec: object) -> object:
        raise RuntimeError("the benchmark opens no agent session")


class WakeOnEveryWrite(Orchestrator):
    """The old rule: every delivery of the store watcher woke the steward and the dispatcher."""

    def _on_store_events(self, events: list[Event]) -> None:
        super()._on_store_events(events)
        self.wake_threadsafe()
        if self.steward is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.steward.wake)


def make_repo(root: Path) -> Store:
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, env=ENV, check=True)
    (root / ".git" / "info" / "exclude").write_text(".stoneforge/\n")
    (root / ".stoneforge").mkdir()
    return Store(root / ".stoneforge" / "state.db")


async def stays_put(count: Callable[[], int], quiet_s: float = 0.5) -> bool:
    before = count()
    await anyio.sleep(quiet_s)
    return count() == before


async def rounds_for_token_writes(root: Path, kind: type[Orchestrator]) -> tuple[int, int, int]:
    """(steward rounds, dispatcher rounds, watcher deliveries) while one worker's token counter
    moves 1,000 times."""
    worker = make_repo(root)
    config = StoneforgeConfig.model_validate({"merge": {"checks": ["true"]}})
    own = Store(worker.path)
    orchestrator = kind(root, config, own, provider=NoAgents())  # type: ignore[arg-type]
    rounds = deliveries = dispatches = 0
    on_events = orchestrator._on_store_events
    real_dispatch = orchestrator._dispatch

    async def counting_dispatch(group):  # noqa: ANN001, ANN202
        nonlocal dispatches
        dispatches += 1
        await real_dispatch(group)

    orchestrator._dispatch = counting_dispatch  # type: ignore[method-assign]

    seen_start = False

    def counted(events: list[Event]) -> None:
        nonlocal deliveries, seen_start
        deliveries += 1
        seen_start = seen_start or any(e.kind == "session.started" for e in events)
        on_events(events)

    orchestrator._on_store_events = counted  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.run)
        await orchestrator.started.wait()
        steward = orchestrator.steward
        assert steward is not None
        real_round = steward.round

        async def counting() -> bool:
            nonlocal rounds
            rounds += 1
            return await real_round()

        steward.round = counting  # type: ignore[method-assign]
        with worker.transaction():  # in progress at once: nothing for the dispatcher
            task = worker.dispatch_task(worker.create_task("busy agent").id)
        session = worker.start_session(task.id, SessionRole.WORKER)
        with anyio.fail_after(30):  # the rounds the setup's writes caused are over
            while not (seen_start and await stays_put(lambda: (rounds, dispatches))):
                await anyio.sleep(0.01)
        rounds = deliveries = dispatches = 0
        for i in range(TOKEN_WRITES):
            worker.update_session(session.id, context_tokens=1000 + i, output_tokens=i)
            await anyio.sleep(0.002)  # a busy worker: many updates a second
        await anyio.sleep(0.5)
        counted = rounds, dispatches, deliveries
        orchestrator.request_stop()
    own.close()
    worker.close()
    return counted


class FirstPageOnly(StoreWatcher):
    """The old watcher: one page of 5,000 per data_version change."""

    def _deliver_all(self) -> None:
        events = self.store.events_since(self.last_id, limit=5000)
        if events:
            self.last_id = events[-1].id
            self.on_events(events)


def watcher_burst(db: Path) -> None:
    store = Store(db)
    before = store.last_event_id()
    got: dict[str, list[Event]] = {"ours": [], "old": []}
    done_at: dict[str, float] = {}
    lock = threading.Lock()

    def collect(name: str):  # noqa: ANN202
        def on_events(events: list[Event]) -> None:
            with lock:
                got[name].extend(events)
                done_at[name] = time.perf_counter()

        return on_events

    ours = StoreWatcher(db, collect("ours"), debounce_s=0, probe_interval_s=0.01).start()
    old = FirstPageOnly(db, collect("old"), debounce_s=0, probe_interval_s=0.01).start()
    started = time.perf_counter()
    store.create_plan_with_tasks(
        "burst", None, [PlannedTask(key=f"k{i}", title=f"t{i}") for i in range(BURST - 1)]
    )
    committed = time.perf_counter()
    last = store.last_event_id()
    deadline = committed + 30
    while time.perf_counter() < deadline:
        with lock:
            if got["ours"] and got["ours"][-1].id >= last:
                break
        time.sleep(0.01)
    time.sleep(2.0)  # the old watcher gets two more seconds (no further commit comes)
    ours.stop()
    old.stop()
    store.close()
    print(
        f"burst of {last - before:,} events in one commit (written in {committed - started:.1f} s)"
    )
    for name in ("old", "ours"):
        events = got[name]
        in_order = [e.id for e in events] == list(range(before + 1, before + 1 + len(events)))
        after = done_at.get(name, committed) - committed
        print(
            f"watcher {name:<4}  delivered {len(events):6,} of {last - before:,}   in order: "
            f"{'yes' if in_order else 'NO'}   last delivery {after * 1000:7.0f} ms after commit"
        )


def forecast_read(db: Path) -> None:
    store = Store(db)
    for task_id in store.ready_task_ids()[:6]:
        store.dispatch_task(task_id)
        store.update_task(task_id, branch=f"sf/{task_id}")
    active = (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)

    def old() -> dict[str, str]:
        return {t.id: t.branch for t in store.list_tasks() if t.status in active and t.branch}

    def ours() -> dict[str, str]:
        return store.active_branches()

    assert old() == ours()
    times = {}
    for name, fn in (("old", old), ("ours", ours)):
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - started)
        times[name] = statistics.median(runs)
    tasks = len(store.list_tasks())
    print(
        f"forecast's branch read, {tasks:,} tasks: old list_tasks() {times['old'] * 1000:7.1f} ms"
        f"   ours active_branches() {times['ours'] * 1000:6.2f} ms"
        f"   ({times['old'] / times['ours']:.0f}x less)"
    )
    store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, kind in (
            ("old rule (every write)", WakeOnEveryWrite),
            ("ours (by kind)", Orchestrator),
        ):
            results[name] = anyio.run(rounds_for_token_writes, Path(tmp) / name.split()[0], kind)
        for name, (rounds, dispatches, deliveries) in results.items():
            print(
                f"{TOKEN_WRITES:,} token-count writes -> {rounds:4d} steward rounds, "
                f"{dispatches:4d} dispatcher rounds   {name:<23} ({deliveries} watcher deliveries)"
            )
        watcher_burst(Path(tmp) / "burst.db")
        forecast_read(Path(tmp) / "burst.db")


if __name__ == "__main__":
    main()
