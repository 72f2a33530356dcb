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
import re
import sqlite3
from collections.abc import Iterable
from functools import cache
from itertools import chain, repeat
from json.encoder import encode_basestring  # Python's own (C) quoting, ensure_ascii=False
from typing import Any

from stoneforge import json_text
from stoneforge.models import CostTotals, Task, TaskStatus
from stoneforge.store.tasks import (
    _WIRE_COLUMNS,
    QUESTION_EVENT,
    REFUSAL_EVENT,
    TaskRows,
    _sql_wire_time,
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
#: The columns read, in the order `task_list_json` takes them: the times quoted as the wire
#: writes them (NULL when not in the store's own form: that task goes the model way), whether the
#: task has a budget in USD (it goes the model way: Python writes a float its own way), the
#: budget in tokens as its text.
_COLUMNS = (
    "id, title, description, plan_id, priority, status, branch, worktree, attempts, dispatches, "
    f"'\"' || {_sql_wire_time('created_at')} || '\"', "
    f"'\"' || {_sql_wire_time('updated_at')} || '\"', "
    "note, budget_usd IS NOT NULL, ifnull(budget_tokens, 'null')"
)
#: A character Python's encoder writes escaped (`ensure_ascii=False`).
_ESCAPED = re.compile(r'["\\\x00-\x1f]')


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


def _quoted_column(values: tuple[str | None, ...]) -> Iterable[str]:
    """A column of text or NULL as the encoder writes each value."""
    if values.count(None) == len(values):
        return repeat("null")
    return ["null" if text is None else encode_basestring(text) for text in values]


def _dependencies(depends_on: dict[str, list[str]]) -> dict[str, str]:
    """Each task's dependencies as the second level of an indented list writes them."""
    if _ESCAPED.search("".join(chain.from_iterable(depends_on.values()))):
        return {
            task_id: "[\n      " + ",\n      ".join(map(encode_basestring, deps)) + "\n    ]"
            for task_id, deps in depends_on.items()
        }
    # No id the encoder would escape (ids are the store's own `t42`): quoted as they are.
    return {
        task_id: '[\n      "' + '",\n      "'.join(deps) + '"\n    ]'
        for task_id, deps in depends_on.items()
    }


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
            # By column: each written by one C-level call (`map`, `zip`, `%`), not a Python
            # step per task.
            (
                ids,
                titles,
                descriptions,
                plans,
                priorities,
                statuses,
                branches,
                worktrees,
                attempts,
                dispatches,
                created,
                updated,
                notes,
                budgets_usd,
                budgets_tokens,
            ) = zip(*rows, strict=True)
            effective, depends_on, blocked = self._graph_facts_of_all(
                db, None if where else (ids, priorities, statuses)
            )
            texts = list(
                map(
                    "%s".join(template).__mod__,
                    zip(
                        map(encode_basestring, ids),
                        map(encode_basestring, titles),
                        map(encode_basestring, descriptions),
                        _quoted_column(plans),
                        priorities,
                        map(effective.__getitem__, ids),
                        map(_dependencies(depends_on).get, ids, repeat("[]")),
                        map(encode_basestring, statuses),
                        map(dict.fromkeys(blocked, "true").get, ids, repeat("false")),
                        _quoted_column(branches),
                        _quoted_column(worktrees),
                        attempts,
                        dispatches,
                        created,
                        updated,
                        _quoted_column(notes),
                        repeat("null"),  # budget in USD: a task with one goes the model way
                        budgets_tokens,
                    ),
                )
            )
            # Tasks that carry more than their row, or whose budget or times Python writes its
            # own way, go the model way.
            rich = self._tasks_carrying_more(db).intersection(ids)
            if any(budgets_usd) or None in created or None in updated:
                rich.update(
                    task_id
                    for task_id, budget, made, changed in zip(
                        ids, budgets_usd, created, updated, strict=True
                    )
                    if budget or made is None or changed is None
                )
            if rich:
                position = dict(zip(ids, range(len(ids)), strict=True))
                for task_id, text in self._rich_texts(db, list(rich)).items():
                    texts[position[task_id]] = text
        return "[\n" + ",\n".join(texts) + "\n]"

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
