"""A write stalled on the store's lock fails clearly within the busy timeout (issue 17), and that
timeout is shorter than the orchestrator lease's time to live, so a stalled writer never writes
after its lease expired."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from steward_helpers import StewardRig
from stoneforge.errors import StoreBusyError
from stoneforge.orchestrator import daemon
from stoneforge.orchestrator.daemon import Orchestrator
from stoneforge.store import BUSY_TIMEOUT_MS, Store


def test_the_busy_timeout_is_shorter_than_the_lease_time_to_live() -> None:
    # A heartbeat due one interval after the last, then stalled the whole busy timeout, still
    # lands before the lease expires; one stalled longer fails first.
    assert BUSY_TIMEOUT_MS / 1000 + daemon.HEARTBEAT_S < daemon.LEASE_TTL_S


def test_a_write_blocked_by_another_process_fails_clearly_after_the_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = Store(path, busy_timeout_ms=300)
    store.acquire_lease("orchestrator", "tok", 20)
    other = sqlite3.connect(path, isolation_level=None)  # another process, holding the lock
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError) as caught:
            store.heartbeat_lease("orchestrator", "tok")
        waited = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert 0.25 <= waited < 3
    assert str(path) in str(caught.value) and "0.3 s" in str(caught.value)
    assert store.heartbeat_lease("orchestrator", "tok")  # free again: it writes


def test_a_write_behind_a_long_read_in_another_thread_fails_clearly(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db", busy_timeout_ms=300)
    store.acquire_lease("orchestrator", "tok", 20)
    holding, release = threading.Event(), threading.Event()

    def long_read() -> None:  # e.g. a whole-board read in a language-server handler thread
        with store._read():
            holding.set()
            release.wait(10)

    reader = threading.Thread(target=long_read)
    reader.start()
    holding.wait(5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="another thread of this process"):
            store.heartbeat_lease("orchestrator", "tok")
        assert time.monotonic() - started < 3
    finally:
        release.set()
        reader.join()
    assert store.heartbeat_lease("orchestrator", "tok")


async def test_an_orchestrator_whose_heartbeat_cannot_be_written_stops_within_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "HEARTBEAT_S", 0.1)
    monkeypatch.setattr(daemon, "LEASE_TTL_S", 1.0)
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    own = Store(rig.store.path, busy_timeout_ms=200)
    orchestrator = Orchestrator(rig.root, rig.config, own, provider=rig.provider)  # type: ignore[arg-type]
    notes: list[str] = []
    orchestrator.on_note = notes.append
    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.run)
        await orchestrator.started.wait()
        other = sqlite3.connect(rig.store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process stalls every write from now on
        try:
            with anyio.fail_after(10):
                while not any("orchestrator stopped" in n for n in notes):
                    await anyio.sleep(0.05)
        finally:
            other.execute("ROLLBACK")
            other.close()
    stopping = [n for n in notes if "no lease heartbeat could be written for 1 s" in n]
    assert stopping, notes
    assert "another process held the database's write lock" in stopping[0]
    own.close()
    rig.close()
