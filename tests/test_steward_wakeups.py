"""The steward and the dispatcher wake only for events that can change their queues (issue 17).

A real orchestrator on a real repository and store: its store watcher sees every commit of
another connection (here the rig's, standing in for a worker or the CLI), and its steward runs a
round only for merge requests, landings, task status changes and the like, its dispatcher only
for tasks created, moved or unblocked; never for a worker's token counts. Their rounds read the
whole board (the dependency graph) in worker threads, never on the event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from steward_helpers import StewardRig
from stoneforge.models import Event, MergeStatus, SessionRole, utcnow
from stoneforge.orchestrator.daemon import Orchestrator
from stoneforge.orchestrator.wakeups import (
    DISPATCHER_WAKE_KINDS,
    STEWARD_WAKE_KINDS,
    wakes_dispatcher,
    wakes_steward,
)
from stoneforge.store import Store
from stoneforge.store.task_graph import TaskGraph

TOKEN_WRITES = 1000


async def wait_until(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.02)


async def settled(count, quiet_s: float = 0.5, timeout: float = 30.0) -> None:  # noqa: ANN001
    """Wait until ``count()`` stays the same for ``quiet_s``."""
    with anyio.fail_after(timeout):
        while True:
            before = count()
            await anyio.sleep(quiet_s)
            if count() == before:
                return


async def test_token_count_writes_cause_no_steward_or_dispatcher_round_and_a_merge_request_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    # Where the orchestrator's connections build the whole board's graph: the loop or a thread.
    graph_reads: list[bool] = []  # True: on the event loop's thread
    loop_thread: list[threading.Thread] = []
    real_graph = TaskGraph._graph

    def recorded_graph(self: TaskGraph, db):  # noqa: ANN001, ANN202
        if self is not rig.store:  # the rig stands in for other processes
            graph_reads.append(threading.current_thread() in loop_thread)
        return real_graph(self, db)

    monkeypatch.setattr(TaskGraph, "_graph", recorded_graph)
    # The orchestrator has its own connection, as `sf serve` would; the rig writes as a worker.
    own = Store(rig.store.path)
    orchestrator = Orchestrator(rig.root, rig.config, own, provider=rig.provider)  # type: ignore[arg-type]
    delivered: list[Event] = []
    on_events = orchestrator._on_store_events

    def seen(events: list[Event]) -> None:
        delivered.extend(events)
        on_events(events)

    orchestrator._on_store_events = seen  # type: ignore[method-assign]
    rounds = 0
    dispatch_rounds = 0
    real_dispatch = orchestrator._dispatch

    async def counting_dispatch(group):  # noqa: ANN001, ANN202
        nonlocal dispatch_rounds
        dispatch_rounds += 1
        await real_dispatch(group)

    orchestrator._dispatch = counting_dispatch  # type: ignore[method-assign]

    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.run)
        loop_thread.append(threading.current_thread())
        await orchestrator.started.wait()
        steward = orchestrator.steward
        assert steward is not None
        real_round = steward.round

        async def counting() -> bool:
            nonlocal rounds
            rounds += 1
            return await real_round()

        steward.round = counting  # type: ignore[method-assign]
        # A busy agent (started after the orchestrator, so no recovery takes its task back).
        with rig.store.transaction():  # in progress at once: the dispatcher never sees it open
            task = rig.store.dispatch_task(rig.store.create_task("busy agent").id)
        session = rig.store.start_session(task.id, SessionRole.WORKER)
        await wait_until(lambda: any(e.kind == "session.started" for e in delivered))
        # The rounds the setup's writes caused are over.
        await settled(lambda: (rounds, dispatch_rounds))
        rounds = dispatch_rounds = 0
        delivered.clear()

        for i in range(TOKEN_WRITES):  # one agent's token counter moving 1,000 times
            rig.store.update_session(session.id, context_tokens=1000 + i, output_tokens=i)
            if i % 50 == 0:
                await anyio.sleep(0)  # let the loop take the watcher's calls meanwhile
        await wait_until(
            lambda: sum(e.kind == "session.updated" for e in delivered) == TOKEN_WRITES
        )
        await anyio.sleep(0.3)
        assert rounds == 0, f"{TOKEN_WRITES} token-count writes caused {rounds} steward rounds"
        assert dispatch_rounds == 0, (
            f"{TOKEN_WRITES} token-count writes caused {dispatch_rounds} dispatcher rounds"
        )

        # A merge request opened (in one commit, so the dispatcher never sees the task open).
        with rig.store.transaction():
            _, mr = rig.submit("Add one", {"one.py": "ONE = 1\n"})
        await wait_until(lambda: rig.store.get_merge_request(mr.id).status == MergeStatus.MERGED)
        assert rounds >= 1
        assert dispatch_rounds >= 1  # a task was created (and moved): the dispatcher looked
        orchestrator.request_stop()
    own.close()
    rig.close()
    assert graph_reads, "the rounds read no dependency graph: nothing was checked"
    on_loop = sum(graph_reads)
    assert on_loop == 0, f"{on_loop} of {len(graph_reads)} whole-board reads ran on the event loop"


def test_only_queue_changing_kinds_wake_the_steward() -> None:
    def event(kind: str) -> Event:
        return Event(id=1, at=utcnow(), actor="t", kind=kind, entity="x", entity_id=None, data={})

    quiet = [
        "session.updated",
        "session.started",
        "session.handoff_requested",
        "handoff.created",
        "forecast.updated",  # the steward's own note
        "steward.paused",
        "check.flaky",
        "lease.acquired",
        "provider.unavailable",
        "task.created",
        "task.question",
    ]
    assert not wakes_steward(event(k) for k in quiet)
    for kind in ("mr.created", "mr.updated", "task.merged", "task.cancelled", "dep.added"):
        assert kind in STEWARD_WAKE_KINDS
        assert wakes_steward([event("session.updated"), event(kind)])


def test_only_kinds_that_change_the_ready_set_wake_the_dispatcher() -> None:
    def event(kind: str, **data: object) -> Event:
        return Event(id=1, at=utcnow(), actor="t", kind=kind, entity="x", entity_id=None, data=data)

    quiet = [
        "session.updated",  # token counts
        "session.started",
        "handoff.created",
        "forecast.updated",
        "steward.paused",
        "check.flaky",
        "lease.acquired",
        "provider.unavailable",
        "budget.holds",  # the dispatcher's own note
        "task.question",
        "task.tool_refused",
        "mr.created",
    ]
    assert not wakes_dispatcher(event(k) for k in quiet)
    # A dispatch readies nothing else; a worker naming its branch and checkout orders nothing.
    assert not wakes_dispatcher([event("task.dispatched", attempt=1)])
    assert not wakes_dispatcher([event("task.updated", branch="sf/t1-a", worktree="/w/t1")])
    assert not wakes_dispatcher([event("task.updated", title="renamed", note="see")])
    assert wakes_dispatcher([event("task.updated", priority=1)])
    for kind in (
        "task.created",
        "task.merged",  # a landing unblocks the dependents
        "task.cancelled",
        "task.retried",
        "task.requeued",
        "task.changes_requested",
        "dep.added",
        "plan.activated",
        "session.budget_reached",
    ):
        assert kind in DISPATCHER_WAKE_KINDS
        assert wakes_dispatcher([event("session.updated"), event(kind)])
