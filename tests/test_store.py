"""The store: event log, secrets redaction, leases, and two processes writing at once."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stoneforge.errors import LeaseHeldError
from stoneforge.models import CheckRun, Handoff, SessionRole, SessionStatus, utcnow
from stoneforge.store import SCHEMA_VERSION, Store


def test_every_change_lands_in_the_event_log(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", actor="test") as store:
        plan = store.create_plan("P")
        task = store.create_task("T", plan_id=plan.id)
        store.activate_plan(plan.id)
        store.dispatch_task(task.id)
        events = store.events_since(0)
        assert store.schema_version() == SCHEMA_VERSION
    kinds = [(e.kind, e.entity_id) for e in events]
    assert kinds == [
        ("plan.created", plan.id),
        ("task.created", task.id),
        ("plan.activated", plan.id),
        ("task.dispatched", task.id),
    ]
    assert all(e.actor == "test" and e.at.tzinfo is not None for e in events)


def test_secrets_never_reach_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-api03-TESTSECRETVALUE1234567890"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    db = tmp_path / "s.db"
    with Store(db) as store:
        task = store.create_task("T")
        session = store.start_session(task.id, SessionRole.WORKER)
        store.update_session(session.id, status=SessionStatus.FAILED, error=f"401 bad key {secret}")
        store.add_handoff(Handoff(task_id=task.id, done=f"used {secret}", created_at=utcnow()))
        store.record_event("note", "task", task.id, {"env": secret})
        assert "[REDACTED]" in (store.get_session(session.id).error or "")
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes()
        assert b"TESTSECRETVALUE" not in path.read_bytes()


def test_lease_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.acquire_lease("orchestrator", "first", ttl_s=30)
        with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"):
            store.acquire_lease("orchestrator", "second", ttl_s=30)
        # On this host a live holder keeps the lease whatever its heartbeat says (a suspended
        # laptop must not end up with two orchestrators) ...
        with pytest.raises(LeaseHeldError):
            store.acquire_lease("orchestrator", "second", ttl_s=0)
        # ... while for a holder on another host, a stale heartbeat means it died: taken over.
        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE leases SET holder_host = 'another-host'")
        store.acquire_lease("orchestrator", "third", ttl_s=0)
        assert not store.heartbeat_lease("orchestrator", "first")
        assert store.heartbeat_lease("orchestrator", "third")
        store.release_lease("orchestrator", "third")
        assert store.lease_holder("orchestrator") is None


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from stoneforge.store import Store
    store = Store(Path(sys.argv[1]), actor=sys.argv[2])
    for i in range(int(sys.argv[3])):
        task = store.create_task(f"{sys.argv[2]} task {i}")
        store.update_task(task.id, note=f"touched by {sys.argv[2]}")
    store.close()
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(db).close()
    per_writer = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), name, str(per_writer)])
        for name in ("cli", "server")
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    with Store(db) as store:
        tasks = store.list_tasks()
        events = store.events_since(0, limit=10_000)
    assert len(tasks) == 2 * per_writer
    assert len({t.id for t in tasks}) == 2 * per_writer
    assert all(t.note and t.note.startswith("touched by") for t in tasks)
    assert len(events) == 4 * per_writer
    assert {e.actor for e in events} == {"cli", "server"}


def test_any_credential_of_the_environment_is_redacted_before_it_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "ghp_" + "x1y2z3" * 6
    monkeypatch.setenv("GITHUB_TOKEN", token)
    with Store(tmp_path / "s.db") as store:
        task = store.create_task("T")
        mr = store.create_merge_request(task.id, "b", f"a check printed {token}")
        store.update_merge_request(
            mr.id,
            checks=[CheckRun(command="env", exit_code=0, duration_s=0.1, output_tail=token)],
        )
        stored = store.get_merge_request(mr.id)
        dumped = json.dumps(
            [e.data for e in store.events_since(0)] + [stored.model_dump(mode="json")]
        )
    assert token not in dumped and "[REDACTED]" in stored.summary


def test_active_branches_names_only_tasks_in_progress_or_review_with_a_branch(
    tmp_path: Path,
) -> None:
    """What the steward's forecast compares, read without loading the board."""
    store = Store(tmp_path / "state.db")
    working = store.dispatch_task(store.create_task("working").id)
    store.update_task(working.id, branch="sf/working")
    no_branch = store.dispatch_task(store.create_task("no branch yet").id)
    store.create_task("open")
    reviewed = store.dispatch_task(store.create_task("in review").id)
    store.complete_task(
        reviewed.id,
        attempt=reviewed.dispatches,
        branch="sf/review",
        head_commit="0" * 40,
        summary="done",
    )
    assert no_branch.branch is None
    assert store.active_branches() == {working.id: "sf/working", reviewed.id: "sf/review"}
