"""The task list as JSON text (`sf task list --json`), written mostly by SQLite.

The text is exactly ``json.dumps([task.wire() for task in tasks], indent=2, ensure_ascii=False)``.
Building a model (or even a dict) per task and encoding it in Python costs 10-30 times a plain
SELECT of the tasks on a 10,000-task board, so for a task that carries nothing but its own row
(no session, handoff, merge request, question, refusal or budget in USD: most of a large board)
SQLite writes its text: the row's values quoted by `json_quote` (the same escapes as Python's
encoder) between fixed pieces of text taken from Python's encoder itself (`_template`). Python
adds only what the dependency graph gives (effective priority, the dependencies). Every other task
goes the model way (`TaskRows._wires`).
"""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from json.encoder import encode_basestring  # Python's own, ensure_ascii=False
from typing import Any

from stoneforge import json_text
from stoneforge.models import CostTotals, Task, TaskStatus
from stoneforge.store.tasks import (
    _STORED_TIME,
    _WIRE_COLUMNS,
    QUESTION_EVENT,
    REFUSAL_EVENT,
    TaskRows,
    _sql_wire_time,
    _task_filter,
)

#: SQL for the value of each field SQLite writes, by wire name (see `_OWN_ROW_ONLY`).
_SQL_VALUES = {
    "id": "json_quote(id)",
    "title": "json_quote(title)",
    "description": "json_quote(description)",
    "planId": "json_quote(plan_id)",
    "priority": "priority",  # integers: SQLite writes them as Python does
    "status": "'\"' || status || '\"'",  # a TaskStatus value: nothing to escape
    "branch": "json_quote(branch)",
    "worktree": "json_quote(worktree)",
    "attempts": "attempts",
    "dispatches": "dispatches",
    "createdAt": f"'\"' || {_sql_wire_time('created_at')} || '\"'",
    "updatedAt": f"'\"' || {_sql_wire_time('updated_at')} || '\"'",
    "note": "json_quote(note)",
    "budgetUsd": "'null'",
    "budgetTokens": "coalesce(budget_tokens, 'null')",
}
#: Whether SQLite writes the task as Python would: no budget in USD (a float, which Python
#: writes its own way) and both times in the store's own form. Else it goes the model way.
_OWN_ROW_ONLY = (
    f"budget_usd IS NULL AND created_at GLOB '{_STORED_TIME}' AND updated_at GLOB '{_STORED_TIME}'"
)
#: Fields Python writes, from the dependency graph.
_FROM_GRAPH = ("effectivePriority", "dependsOn", "blocked")
#: Their values for a task that carries nothing but its row.
_EMPTY = {
    "sessions": [],
    "handoffs": [],
    "mergeRequest": None,
    "questions": [],
    "cost": CostTotals().wire(),
    "refusals": [],
}


def _sentinel(n: int) -> str:
    return f"\x00{n}\x00"


@cache
def _template() -> list[str] | None:
    """The task's text as the SQL of its segments around the fields the graph gives
    (`_FROM_GRAPH`, in that order); their literal text is taken from Python's encoder. None when a field of `Task` is not known here
    (then every task goes the model way, and the test of this module fails until it is added)."""
    sample = Task(id="t1", title="t", created_at="2026-01-01T00:00:00Z").wire()
    values: dict[str, Any] = {}
    slots: list[str] = []
    for key in sample:
        if key in _SQL_VALUES or key in _FROM_GRAPH:
            values[key] = _sentinel(len(slots))
            slots.append(key)
        elif key in _EMPTY:
            values[key] = _EMPTY[key]
        else:
            return None
    # The task as the second level of an indented list, as `json.dumps` writes it.
    text = json.dumps([values], indent=2, ensure_ascii=False)[2:-2]
    # Each segment is one printf(): its literal text in the format (one string built per
    # segment, where `||` would copy the growing text at every step), the values as arguments.
    formats: list[str] = [""]
    arguments: list[list[str]] = [[]]
    for n, key in enumerate(slots):
        before, text = text.split(json.dumps(_sentinel(n)), 1)
        formats[-1] += before.replace("%", "%%")
        if key in _FROM_GRAPH:
            formats.append("")
            arguments.append([])
        else:
            formats[-1] += "%s"
            arguments[-1].append(_SQL_VALUES[key])
    formats[-1] += text.replace("%", "%%")
    if [key for key in slots if key in _FROM_GRAPH] != list(_FROM_GRAPH):
        return None  # `task_list_json` writes them in this order
    return [
        f"printf({', '.join([_literal(f), *args])})" if args else _literal(f)
        for f, args in zip(formats, arguments, strict=True)
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _dependencies(deps: list[str] | None) -> str:
    if not deps:
        return "[]"
    return "[\n      " + ",\n      ".join(map(encode_basestring, deps)) + "\n    ]"


class TaskJson(TaskRows):
    def task_list_json(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> str:
        """``json.dumps([t.wire() for t in self.list_tasks(...)], indent=2, ensure_ascii=False)``,
        the same text, written mostly by SQLite (see the module)."""
        template = _template()
        where, params = _task_filter(plan_id, status)
        with self._read() as db:
            if template is None:
                rows = db.execute(
                    f"SELECT {_WIRE_COLUMNS} FROM tasks {where} ORDER BY seq", params
                ).fetchall()
                return json_text.dumps(self._wires(db, rows))
            plain = db.cursor()
            plain.row_factory = None  # tuples
            rows = plain.execute(
                f"SELECT id, {_OWN_ROW_ONLY}, {', '.join(template)} FROM tasks {where} "
                "ORDER BY seq",
                params,
            ).fetchall()
            if not rows:
                return "[]"
            carrying = self._tasks_carrying_more(db)
            effective, depends_on, blocked = self._graph_facts_of_all(db)
            rich = [row[0] for row in rows if row[0] in carrying or not row[1]]
            texts = self._rich_texts(db, rich) if rich else {}
        parts = []
        for task_id, _, first, second, third, last in rows:
            text = texts.get(task_id)
            if text is None:
                deps = depends_on.get(task_id)
                text = (
                    f"{first}{effective[task_id]}{second}"
                    f"{_dependencies(deps) if deps else '[]'}{third}"
                    f"{'true' if task_id in blocked else 'false'}{last}"
                )
            parts.append(text)
        return "[\n" + ",\n".join(parts) + "\n]"

    @staticmethod
    def _tasks_carrying_more(db: sqlite3.Connection) -> set[str]:
        """Tasks with a session, handoff, merge request, question or refusal."""
        return {
            row[0]
            for row in db.execute(
                "SELECT task_id FROM sessions UNION SELECT task_id FROM handoffs "
                "UNION SELECT task_id FROM merge_requests "
                "UNION SELECT entity_id FROM events WHERE kind IN (?, ?)",
                (QUESTION_EVENT, REFUSAL_EVENT),
            )
        }

    def _rich_texts(self, db: sqlite3.Connection, task_ids: list[str]) -> dict[str, str]:
        """The text of each of ``task_ids`` the model way, indented as an item of the list."""
        rows: list[sqlite3.Row] = []
        for start in range(0, len(task_ids), 500):  # SQLite's limit on parameters
            chunk = task_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows += db.execute(
                f"SELECT {_WIRE_COLUMNS} FROM tasks WHERE id IN ({marks})", chunk
            ).fetchall()
        return {
            wire["id"]: "  " + json_text.dumps(wire).replace("\n", "\n  ")
            for wire in self._wires(db, rows)
        }
