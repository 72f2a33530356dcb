"""The lean, incremental board over the real `sf lsp --stdio`: a lean `taskTree` with a version,
`stoneforge/changed` deltas that chain from version to version, the full tree after a gap, a
task's details on demand, and the forecast taken from the steward's event."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lsprotocol import types

from lsp_helpers import Changes, lsp_session, request
from stoneforge.graph import DependencyGraph, Node
from stoneforge.lifecycle import TaskEvent
from stoneforge.lsp.board import LeanBoard
from stoneforge.models import SessionRole, SessionStatus, TaskStatus
from stoneforge.orchestrator.daemon import LEASE_NAME
from stoneforge.service import Service
from stoneforge.store import Store
from stoneforge.store.board import board_facts

# What a lean row may carry; details (sessions, handoffs, checks, ...) must not be among them.
LEAN_KEYS = {
    "id",
    "title",
    "planId",
    "priority",
    "effectivePriority",
    "dependsOn",
    "status",
    "blocked",
    "branch",
    "worktree",
    "attempts",
    "note",
    "latestSession",
    "mergeRequest",
    "sessionCount",
    "handoffCount",
    "refusalCount",
    "costUsd",
    "tokens",
}


def _rows(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = [t for p in tree["plans"] for t in p["tasks"]] + tree["unplanned"]
    return {t["id"]: t for t in tasks}


def _complete(store: Store, task_id: str) -> None:
    """The attempt ends with work: a merge request, the task in review."""
    task = store.get_task(task_id)
    store.complete_task(
        task_id, attempt=task.dispatches, branch=f"sf/{task_id}", head_commit="c" * 40, summary="-"
    )


def _store(repo: Path) -> Store:
    return Store(repo / ".stoneforge" / "state.db", actor="another-process")


async def test_the_tree_is_lean_and_versioned_and_changes_arrive_as_deltas(repo: Path) -> None:
    async with lsp_session(repo) as client:
        changes = Changes(client)
        plan = await request(client, "stoneforge/createPlan", {"title": "Sprint", "activate": True})
        first = await request(client, "stoneforge/createTask", {"title": "Model", "planId": "p1"})
        second = await request(
            client,
            "stoneforge/createTask",
            {"title": "View", "planId": plan["id"], "priority": 1, "dependsOn": [first["id"]]},
        )
        with _store(repo) as store:
            store.dispatch_task(first["id"])
            session = store.start_session(first["id"], SessionRole.WORKER)
            store.update_session(session.id, context_tokens=1234, cost_usd=0.25)
            version = store.last_event_id()
        tree = await request(client, "stoneforge/taskTree")
        assert tree["version"] == version  # the newest event the tree has seen
        rows = _rows(tree)
        assert set(rows) == {first["id"], second["id"]}
        for row in rows.values():
            assert set(row) <= LEAN_KEYS, set(row) - LEAN_KEYS
        model, view = rows[first["id"]], rows[second["id"]]
        assert model["status"] == "in_progress" and model["effectivePriority"] == 1
        assert model["latestSession"] == {
            "id": session.id,
            "role": "worker",
            "status": "running",
            "contextTokens": 1234,
        }
        assert model["sessionCount"] == 1 and model["costUsd"] == 0.25
        assert view["blocked"] is True and view["dependsOn"] == [first["id"]]
        assert [p["id"] for p in tree["plans"]] == ["p1"] and "taskIds" not in tree["plans"][0]

        # Another process lands the dependency: one delta, from the tree's version, carries
        # the landed task and the task that no longer waits for it.
        with _store(repo) as store:
            _complete(store, first["id"])
            store.transition_task(first["id"], TaskEvent.LAND)
        delta = await changes.until(
            lambda p: any(
                t["id"] == first["id"] and t["status"] == "merged" for t in p.get("tasks", [])
            )
        )
        assert delta["previousVersion"] <= version < delta["version"]
        changed = {t["id"]: t for t in delta["tasks"]}
        assert "blocked" not in changed[second["id"]]  # a lean row leaves out false

        # The deltas chain: each starts where the one before ended.
        with _store(repo) as store:
            for n in range(5):
                store.update_task(second["id"], title=f"View {n}")
        await changes.until(lambda p: any(t.get("title") == "View 4" for t in p.get("tasks", [])))
        chained = [p for p in changes.seen if p.get("version", 0) > version]
        for before, after in zip(chained, chained[1:], strict=False):
            assert after["previousVersion"] == before["version"]
        # A client that missed them (a gap) reads the whole tree: all of it is there.
        full = await request(client, "stoneforge/taskTree")
        assert full["version"] >= chained[-1]["version"]
        assert _rows(full)[second["id"]]["title"] == "View 4"
        assert _rows(full)[first["id"]]["status"] == "merged"


async def test_a_tasks_details_come_on_demand(repo: Path) -> None:
    async with lsp_session(repo) as client:
        task = await request(client, "stoneforge/createTask", {"title": "Detailed"})
        with _store(repo) as store:
            store.dispatch_task(task["id"])
            session = store.start_session(task["id"], SessionRole.WORKER)
            store.update_session(session.id, status=SessionStatus.COMPLETED)
        details = await request(client, "stoneforge/task", {"id": task["id"]})
        assert [s["id"] for s in details["sessions"]] == [session.id]
        assert details["handoffs"] == [] and details["description"] == ""
        assert details["row"]["id"] == task["id"] and details["row"]["sessionCount"] == 1
        assert details["version"] >= 1
        # The full tree is still there for a client that wants everything at once.
        full = await request(client, "stoneforge/taskTree", {"full": True})
        assert [s["id"] for s in full["unplanned"][0]["sessions"]] == [session.id]
        try:
            await request(client, "stoneforge/task", {"id": "t404"})
        except Exception as exc:  # an unknown id is an error, not an empty answer
            assert "no task with id 't404'" in str(exc)
        else:
            raise AssertionError("stoneforge/task accepted an unknown id")


async def test_the_forecast_comes_from_the_stewards_event(repo: Path) -> None:
    """While an orchestrator runs, the server does not forecast itself: the warnings are those
    of the steward's `forecast.updated` event (here one no real branch would produce)."""
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\nVERSION = 1\n")
    service, _ = Service.init(repo)
    with service:
        task = service.create_task("Use sum in add")
        service.store.acquire_lease(LEASE_NAME, "a-steward", 20.0)  # "an orchestrator runs"
    uri = (repo / "calc.py").as_uri()
    async with lsp_session(repo, init=False) as client:
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=(repo / "calc.py").read_text()
                )
            )
        )
        hunk = {
            "merged": {"start": 2, "count": 5},
            "ours": {"start": 2, "count": 1},
            "theirs": {"start": 2, "count": 1},
        }
        pair = {
            "ours": "main",
            "theirs": task.id,
            "conflict": True,
            "error": None,
            "files": [{"path": "calc.py", "kinds": ["content"], "binary": False, "hunks": [hunk]}],
        }
        data = {
            "conflicts": [{"ours": "main", "theirs": task.id, "paths": ["calc.py"]}],
            "target": "main",
            "pairs": [pair],
        }
        with _store(repo) as store:
            store.record_event("forecast.updated", "forecast", None, data)
        for _ in range(200):
            if client.diagnostics.get(uri):
                break
            await asyncio.sleep(0.05)
        [warning] = client.diagnostics[uri]
        assert f"task {task.id} (Use sum in add)" in warning.message
        assert warning.range.start.line == 1  # line 2 of the file, 0-based
        with _store(repo) as store:  # the steward sees the conflict gone
            store.record_event(
                "forecast.updated", "forecast", None, {**data, "conflicts": [], "pairs": []}
            )
        for _ in range(200):
            if not client.diagnostics.get(uri):
                break
            await asyncio.sleep(0.05)
        assert list(client.diagnostics[uri]) == []


# -- the same rules on plain tuples, and the board kept current ---------------------------------


@st.composite
def boards(draw: Any) -> tuple[list[tuple[str, int, str]], list[tuple[str, str]]]:
    n = draw(st.integers(1, 25))
    statuses = [s.value for s in TaskStatus]
    tasks = [(f"t{i}", draw(st.integers(1, 5)), draw(st.sampled_from(statuses))) for i in range(n)]
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=40))
    edges = sorted({(f"t{max(a, b)}", f"t{min(a, b)}") for a, b in pairs if a != b})  # acyclic
    return tasks, edges


@settings(max_examples=200, deadline=None)
@given(boards())
def test_board_facts_follow_the_dependency_graph(
    board: tuple[list[tuple[str, int, str]], list[tuple[str, str]]],
) -> None:
    tasks, edges = board
    graph = DependencyGraph(
        [Node(id=i, priority=p, status=TaskStatus(s), created_at="") for i, p, s in tasks], edges
    )
    effective, depends_on, blocked = board_facts(tasks, edges)
    assert effective == graph.effective_priorities()
    assert {k: v for k, v in depends_on.items() if v} == {
        k: v for k, v in graph.depends_on.items() if v
    }
    assert blocked == {i for i, _, _ in tasks if graph.is_blocked(i)}


def test_the_board_kept_current_by_deltas_equals_a_fresh_read(repo: Path) -> None:
    """Whatever happens to the board, the rows a client holds after applying every delta are
    the rows a fresh read gives."""
    rng = random.Random(7)
    service, _ = Service.init(repo)
    with service:
        store = service.store
        board = LeanBoard(service)
        held = _rows(board.tree())  # what a client holds
        version = board.version
        plan = store.create_plan("Plan")
        for step in range(120):
            ids = [t.id for t in store.list_tasks()]
            action = rng.random()
            if action < 0.3 or not ids:
                deps = rng.sample(ids, min(len(ids), rng.randint(0, 2)))
                store.create_task(
                    f"task {step}",
                    plan_id=plan.id if rng.random() < 0.5 else None,
                    priority=rng.randint(1, 5),
                    depends_on=deps,
                )
            elif action < 0.45:
                store.update_task(rng.choice(ids), priority=rng.randint(1, 5))
            elif action < 0.5:
                store.update_task(rng.choice(ids), title=f"renamed at {step}", note="a note")
            elif action < 0.7:
                task = store.get_task(rng.choice(ids))
                if task.status == TaskStatus.OPEN:
                    store.dispatch_task(task.id)
                    store.start_session(task.id, SessionRole.WORKER)
                elif task.status == TaskStatus.IN_PROGRESS:
                    _complete(store, task.id)
                elif task.status == TaskStatus.REVIEW:
                    store.transition_task(task.id, TaskEvent.LAND)
            elif action < 0.8:
                victim = store.get_task(rng.choice(ids))
                if victim.status not in (TaskStatus.CANCELLED, TaskStatus.MERGED):
                    store.cancel_task(victim.id)
            elif action < 0.9 and len(ids) > 1:
                a, b = sorted(rng.sample(ids, 2), key=lambda i: int(i[1:]))
                store.add_dependency(b, a)  # newer waits on older: never a cycle
            if rng.random() < 0.4:  # a delta now and then, covering several writes
                delta = board.advance()
                assert delta["previousVersion"] == version
                version = delta["version"]
                held.update({t["id"]: t for t in delta["tasks"]})
                # `stoneforge/status` counts in SQL what the dependency graph says.
                graph = store.graph()
                blocked = sum(1 for i in graph.nodes if graph.is_blocked(i))
                assert store.blocked_and_ready_counts() == (blocked, len(graph.ready()))
            if step == 60:
                store.create_plan("Draft")  # tasks of a draft plan are never ready
                store.create_task("in a draft", plan_id="p2")
        delta = board.advance()
        held.update({t["id"]: t for t in delta["tasks"]})
        fresh = service.task_tree()
        assert delta["version"] == fresh["version"]
        assert held == _rows(fresh)
        # What `taskTree` sends: the same tree, encoded from rows encoded once each.
        assert json.loads(board.tree_json()) == board.tree() == fresh


def test_a_plain_field_change_is_a_delta_of_one_row(repo: Path) -> None:
    """A title or a token count changes one row: its waiters' and blockers' rows are not sent
    again (a busy agent's token counts stay small deltas); a priority change sends its blockers
    (their effective priority follows) and a status move its waiters (``blocked``)."""
    service, _ = Service.init(repo)
    with service:
        store = service.store
        root = store.create_task("root", priority=5)
        middle = store.create_task("middle", priority=5, depends_on=[root.id])
        waiters = [store.create_task(f"w{n}", depends_on=[middle.id]).id for n in range(20)]
        board = LeanBoard(service)
        board.tree()

        def changed() -> set[str]:
            return {row["id"] for row in board.advance()["tasks"]}

        store.update_task(middle.id, title="renamed")
        assert changed() == {middle.id}
        store.dispatch_task(middle.id)
        session = store.start_session(middle.id, SessionRole.WORKER)
        changed()
        for n in range(5):
            store.update_session(session.id, context_tokens=1000 * n)
        assert changed() == {middle.id}
        store.update_task(waiters[0], priority=1)
        assert changed() == {waiters[0], middle.id, root.id}
        assert _rows(board.tree())[root.id]["effectivePriority"] == 1
        store.cancel_task(middle.id)
        assert changed() == {middle.id, root.id, *waiters}
