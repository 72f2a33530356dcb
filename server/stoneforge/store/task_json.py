"""The task list as JSON text (`sf task list --json`), without a model or a dict per task.

The text is exactly ``json.dumps([task.wire() for task in tasks], indent=2, ensure_ascii=False)``.
Building a model per task and encoding it with Python's indented encoder costs some 30 times a
plain SELECT of the tasks on a 10,000-task board. A task that carries nothing but its own row (no
session, handoff, merge request, question, refusal, stack, budget in USD, and its times in the store's
own form: most of a large board) is written here instead: its values quoted by the C half of
Python's own encoder (`encode_basestring`) into fixed pieces of text taken from Python's encoder
itself (`_template`), with the graph's fields (effective priority, dependencies, blocked) from one
read of the board. Every other task goes the model way (`TaskRows._wires`). (SQLite's `printf`
and `json_quote` write the same text, measured twice as slow as this.)
"""

from __future__ import annotations

import json
import sqlite3
from functools import cache
from json.encoder import encode_basestring  # Python's own (C) quoting, ensure_ascii=False
from typing import Any

from stoneforge import json_text
from stoneforge.models import CostTotals, Task, TaskStatus
from stoneforge.store.tasks import (
    _WIRE_COLUMNS,
    QUESTION_EVENT,
    REFUSAL_EVENT,
    TaskRows,
    _task_filter,
)

#: The fields written from the row, in wire order, by segment (a segment ends where the graph's
#: next field goes: effective priority, dependencies, blocked).
_SEGMENTS = (
    ("id", "title", "description", "planId", "priority"),
    (),
    ("status",),
    (
        "branch",
        "worktree",
        "attempts",
        "dispatches",
        "createdAt",
        "updatedAt",
        "note",
        "budgetUsd",
        "budgetTokens",
    ),
)
#: Fields the graph gives, one after each segment but the last.
_FROM_GRAPH = ("effectivePriority", "dependsOn", "blocked")
#: Their values for a task that carries nothing but its row.
_EMPTY = {
    "sessions": [],
    "handoffs": [],
    "mergeRequest": None,
    "questions": [],
    "cost": CostTotals().wire(),
    "refusals": [],
    "stackHeads": {},
    "stackBase": None,
    "stackedOn": [],
}
#: The columns read, in the order `task_list_json` unpacks them.
_COLUMNS = (
    "id, title, description, plan_id, priority, status, branch, worktree, attempts, dispatches, "
    "created_at, updated_at, note, budget_usd, budget_tokens"
)


def _sentinel(n: int) -> str:
    return f"\x00{n}\x00"


@cache
def _template() -> tuple[str, str, str, str] | None:
    """The four %-format strings of a task's text around the graph's fields, their literal text
    taken from Python's encoder. None when the fields of `Task` are not the ones `_SEGMENTS` and
    `_EMPTY` name, in that order (then every task goes the model way, and the test of this
    module fails until they are brought in line)."""
    sample = Task(id="t1", title="t", created_at="2026-01-01T00:00:00Z").wire()
    written = [key for segment in _SEGMENTS for key in segment]
    values: dict[str, Any] = {}
    slots: list[str] = []
    for key in sample:
        if key in written or key in _FROM_GRAPH:
            values[key] = _sentinel(len(slots))
            slots.append(key)
        elif key in _EMPTY:
            values[key] = _EMPTY[key]
        else:
            return None
    expected = [
        key for n, segment in enumerate(_SEGMENTS) for key in (*segment, *_FROM_GRAPH[n : n + 1])
    ]
    if slots != expected:
        return None
    # The task as the second level of an indented list, as `json.dumps` writes it.
    text = json.dumps([values], indent=2, ensure_ascii=False)[2:-2].replace("%", "%%")
    formats = [""]
    for n, key in enumerate(slots):
        before, text = text.split(json.dumps(_sentinel(n)), 1)
        formats[-1] += before
        if key in _FROM_GRAPH:
            formats.append("")
        else:
            formats[-1] += "%s"
    formats[-1] += text
    first, second, third, last = formats
    return first, second, third, last


def _quoted(text: str | None) -> str:
    return "null" if text is None else encode_basestring(text)


def _time(stored: str) -> str | None:
    """A time in the store's own form (`2026-01-02T03:04:05.678+00:00`) as the wire writes it,
    quoted; None for any other form (that task goes the model way)."""
    if len(stored) != 29 or stored[19] != "." or not stored.endswith("+00:00"):
        return None
    millis = stored[20:23]
    return f'"{stored[:19]}Z"' if millis == "000" else f'"{stored[:23]}000Z"'


def _dependencies(deps: list[str] | None) -> str:
    if not deps:
        return "[]"
    return "[\n      " + ",\n      ".join(map(encode_basestring, deps)) + "\n    ]"


class TaskJson(TaskRows):
    def task_list_json(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> str:
        """``json.dumps([t.wire() for t in self.list_tasks(...)], indent=2, ensure_ascii=False)``,
        the same text, written without a model per task (see the module)."""
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
                f"SELECT {_COLUMNS} FROM tasks {where} ORDER BY seq", params
            ).fetchall()
            if not rows:
                return "[]"
            carrying = self._tasks_carrying_more(db)
            effective, depends_on, blocked = self._graph_facts_of_all(db)
            parts: list[str | None] = []
            rich: list[str] = []
            first, second, third, last = template
            for (
                task_id,
                title,
                description,
                task_plan,
                priority,
                task_status,
                branch,
                worktree,
                attempts,
                dispatches,
                created_at,
                updated_at,
                note,
                budget_usd,
                budget_tokens,
            ) in rows:
                created, updated = _time(created_at), _time(updated_at)
                if task_id in carrying or budget_usd is not None or not (created and updated):
                    rich.append(task_id)
                    parts.append(None)
                    continue
                deps = depends_on.get(task_id)
                parts.append(
                    first
                    % (
                        encode_basestring(task_id),
                        encode_basestring(title),
                        encode_basestring(description),
                        _quoted(task_plan),
                        priority,
                    )
                    + f"{effective[task_id]}{second}{_dependencies(deps) if deps else '[]'}"
                    + third % encode_basestring(task_status)
                    + ("true" if task_id in blocked else "false")
                    + last
                    % (
                        _quoted(branch),
                        _quoted(worktree),
                        attempts,
                        dispatches,
                        created,
                        updated,
                        _quoted(note),
                        "null",
                        "null" if budget_tokens is None else budget_tokens,
                    )
                )
            texts = self._rich_texts(db, rich) if rich else {}
        if rich:
            parts = [
                texts[row[0]] if part is None else part
                for row, part in zip(rows, parts, strict=True)
            ]
        return "[\n" + ",\n".join(parts) + "\n]"  # type: ignore[arg-type]

    @staticmethod
    def _tasks_carrying_more(db: sqlite3.Connection) -> set[str]:
        """Tasks with a session, handoff, merge request, question or refusal, or stacked."""
        return {
            row[0]
            for row in db.execute(
                "SELECT task_id FROM sessions UNION SELECT task_id FROM handoffs "
                "UNION SELECT task_id FROM merge_requests "
                "UNION SELECT id FROM tasks WHERE (stacked_on IS NOT NULL AND stacked_on != '{}') "
                "OR stack_base IS NOT NULL "
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
