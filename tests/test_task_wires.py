"""`sf task list --json` is built straight from the store's rows, mostly by SQLite (issue 17):
the same text as the models give (`Task.wire()` and Python's indented `json.dumps`), on a board
where tasks carry everything a task can carry, and for any text in their fields."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoneforge.lifecycle import TaskEvent
from stoneforge.models import (
    Handoff,
    ReviewComment,
    ReviewVerdict,
    SessionRole,
    TaskStatus,
    utcnow,
)
from stoneforge.store import REFUSAL_EVENT, SCHEMA_VERSION, PlannedTask, Store
from stoneforge.store.task_json import _template


def naive(store: Store, **filters: object) -> str:
    """What the CLI printed before: a model per task, Python's indented encoder."""
    tasks = [task.wire() for task in store.list_tasks(**filters)]  # type: ignore[arg-type]
    return json.dumps(tasks, indent=2, ensure_ascii=False)


def busy_board(store: Store, tasks: int) -> None:
    """Tasks with dependencies, a plan, sessions with costs (tiny ones too), handoffs, merge
    requests with reviews, questions, refusals, budgets, and every status on the way."""
    plan = store.create_plan_with_tasks(
        "plan", None, [PlannedTask(key=f"k{i}", title=f"planned {i}") for i in range(3)]
    )
    ids = [t.id for t in store.list_tasks(plan_id=plan.id)]
    for i in range(tasks):
        ids.append(
            store.create_task(
                f'task {i} «ünï»\n"quoted"',
                description="line\n\ttab" if i % 3 else "",
                priority=1 + i % 5,
                depends_on=ids[-2:-1] if i % 4 else (),
            ).id
        )
    for n, task_id in enumerate(ids[::3]):
        store.dispatch_task(task_id)
        session = store.start_session(task_id, SessionRole.WORKER)
        store.update_session(
            session.id, input_tokens=10 * n, output_tokens=n, cost_usd=3e-06 * n + 0.25 * (n % 2)
        )
        if n % 2:
            store.add_handoff(
                Handoff(task_id=task_id, session_id=session.id, done="half", created_at=utcnow())
            )
            store.record_question(task_id, "why?", "because", session_id=session.id)
            store.record_event(
                REFUSAL_EVENT,
                "task",
                task_id,
                {"sessionId": session.id, "tool": "Bash", "tried": "curl x", "reason": "net"},
            )
        if n % 3 == 0:
            mr = store.complete_task(
                task_id,
                attempt=store.get_task(task_id).dispatches,
                branch=f"sf/{task_id}",
                head_commit="a" * 40,
                summary="done",
                review=True,
            )
            store.add_review(
                mr.id,
                ReviewVerdict.REQUEST_CHANGES,
                "fix",
                [ReviewComment(path="a.py", line=3, body="here")],
            )
        elif n % 3 == 1:
            store.cancel_task(task_id)
    # Own budgets (a float Python writes its own way, a token count), on tasks with no session.
    store.cancel_task(ids[1])
    store.transition_task(ids[1], TaskEvent.RETRY, budget_usd=2.5e-05, budget_tokens=1000)
    store.cancel_task(ids[2])
    store.transition_task(ids[2], TaskEvent.RETRY, budget_tokens=500)
    # Priorities changed and a dependency added later: urgency flows to the blockers' rows.
    store.update_task(ids[-1], priority=1)
    store.update_task(ids[-5], priority=5)
    store.add_dependency(ids[-3], ids[4])
    # An open task stacked on a blocker in review (its branch starts from the blocker's head).
    stacked = store.create_task("stacked", depends_on=[ids[0]]).id
    store.set_stack(stacked, {ids[0]: "b" * 40}, "b" * 40)


@pytest.mark.parametrize("tasks", [20, 120])  # the few-rows path and the whole-board path
def test_wires_from_rows_are_the_models_wires(tmp_path: Path, tasks: int) -> None:
    with Store(tmp_path / "state.db") as store:
        busy_board(store, tasks)
        for status in (None, TaskStatus.OPEN, TaskStatus.REVIEW):
            models = [task.wire() for task in store.list_tasks(status=status)]
            assert store.list_task_wires(status=status) == models
            assert json.dumps(store.list_task_wires(status=status), indent=2) == json.dumps(
                models, indent=2
            )
        plan_id = store.list_plans()[0].id
        assert store.list_task_wires(plan_id=plan_id) == [
            task.wire() for task in store.list_tasks(plan_id=plan_id)
        ]
        for filters in ({}, {"status": TaskStatus.OPEN}, {"plan_id": plan_id}):
            assert store.task_list_json(**filters) == naive(store, **filters)
        assert (
            store.task_list_json(status=TaskStatus.MERGED)
            == "[]"
            == naive(store, status=TaskStatus.MERGED)
        )


def test_every_field_of_a_task_is_written_by_the_fast_way() -> None:
    # A new field of `Task` must be added to `task_json` (else every task goes the slow way).
    assert _template() is not None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1).filter(str.strip), st.text(), st.integers(1, 5)),
        min_size=1,
        max_size=8,
    )
)
def test_any_text_is_written_as_python_writes_it(
    tmp_path_factory: pytest.TempPathFactory, tasks: list[tuple[str, str, int]]
) -> None:
    with Store(tmp_path_factory.mktemp("text") / "state.db") as store:
        ids: list[str] = []
        for title, description, priority in tasks:
            task = store.create_task(
                title, description=description, priority=priority, depends_on=ids[-1:]
            )
            store.update_task(task.id, note=description or None, branch=title)
            ids.append(task.id)
        assert store.task_list_json() == naive(store)


def test_the_whole_board_facts_agree_with_the_graph(tmp_path: Path) -> None:
    """Past 50 tasks a list reads the board's facts in one go: the graph's own answers."""
    with Store(tmp_path / "state.db") as store:
        busy_board(store, 120)
        graph = store.graph()
        effective = graph.effective_priorities()
        tasks = store.list_tasks()
        assert len(tasks) > 50
        for task in tasks:
            assert task.effective_priority == effective[task.id]
            assert task.blocked == graph.is_blocked(task.id)
            assert task.depends_on == graph.depends_on[task.id]
        for stacking in (False, True):
            assert store.ready_task_ids(stacking=stacking) == graph.ready(stacking=stacking)


def graph_facts(store: Store) -> dict[str, tuple[int, bool, list[str]]]:
    graph = store.graph()
    effective = graph.effective_priorities()
    return {
        task_id: (effective[task_id], graph.is_blocked(task_id), graph.depends_on[task_id])
        for task_id in graph.nodes
    }


def test_a_version_5_store_gains_the_graph_facts_of_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path) as store:
        busy_board(store, 30)
        before = naive(store)
    with sqlite3.connect(path) as db:  # the store as version 5 left it
        for column in ("effective_priority", "blocked", "depends_on_list"):
            db.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 5")
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 6
        assert store.stored_graph_facts() == graph_facts(store)
        assert store.task_list_json() == before == naive(store)


def test_a_row_written_around_the_store_is_listed_from_the_graph(tmp_path: Path) -> None:
    """A task inserted by plain SQL (a bulk set-up) keeps no facts: the list reads the graph."""
    path = tmp_path / "state.db"
    with Store(path) as store:
        busy_board(store, 30)
        first = store.list_tasks()[0].id
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO tasks (seq, id, title, priority, status, created_at, updated_at) "
            "VALUES (999, 't999', 'raw', 1, 'open', '2026-01-01T00:00:00.000+00:00', "
            "'2026-01-01T00:00:00.000+00:00')"
        )
        db.execute("INSERT INTO deps (task_id, depends_on) VALUES ('t999', ?)", (first,))
    with Store(path) as store:
        assert store.stored_graph_facts()["t999"] == (None, None, None)
        assert store.task_list_json() == naive(store)
        store.refresh_graph_facts()
        assert store.stored_graph_facts() == graph_facts(store)
        assert store.task_list_json() == naive(store)
