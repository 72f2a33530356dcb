"""The task list as JSON text (`sf task list --json`), without a model or a dict per task.

The text is exactly ``json.dumps([task.wire() for task in tasks], indent=2, ensure_ascii=False)``.
Building a model per task and encoding it with Python's indented encoder costs some 30 times a
plain SELECT of the tasks on a 10,000-task board. A task that carries nothing but its own row (no
session, handoff, merge request, question, refusal, stack, budget in USD, and its times in the
store's own form: most of a large board) is written here instead, column by column: each column
quoted at once by the C half of Python's own encoder (`encode_basestring`, through `map`), and
every task's text made by one `%` into the fixed pieces of text taken from Python's encoder itself
(`_template`), so that no Python step runs per task. The graph's fields (effective priority,
dependencies, blocked) are the ones each row keeps (`TaskGraph._refresh_graph_facts`): reading
the 30,000 dependencies of a 10,000-task board and computing them cost some three SELECTs of the
tasks on their own. A row that keeps none (written around the store) has them from one read of
the graph instead. Every other task goes the model way (`TaskRows._wires`). (SQLite's `printf`,
`json_quote` and `GLOB` write or test the same text, measured slower than this.)
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
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
    _task_filter,
)

#: The fields written per task, in wire order: from its row, and from the graph (effective
#: priority, dependencies, blocked).
_FIELDS = (
    "id",
    "title",
    "description",
    "planId",
    "priority",
    "effectivePriority",
    "dependsOn",
    "status",
    "blocked",
    "branch",
    "worktree",
    "attempts",
    "dispatches",
    "createdAt",
    "updatedAt",
    "note",
    "budgetUsd",
    "budgetTokens",
)
#: The values of every other field for a task that carries nothing but its row.
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
#: The columns read, in the order `task_list_json` takes them (whether the task has a budget in
#: USD: a task with one goes the model way, as Python writes a float its own way), and the
#: graph's facts kept in the row (`TaskGraph._refresh_graph_facts`).
_COLUMNS = (
    "id, title, description, plan_id, priority, status, branch, worktree, attempts, dispatches, "
    "created_at, updated_at, note, budget_usd IS NOT NULL, ifnull(budget_tokens, 'null'), "
    "effective_priority, blocked, depends_on_list"
)
#: A character Python's encoder writes escaped (`ensure_ascii=False`).
_ESCAPED = re.compile(r'["\\\x00-\x1f]')
#: The store's own form of a time, `2026-01-02T03:04:05.678+00:00`, by position: what is there.
_STORED_FORM = {19: ".", 23: "+", 24: "0", 25: "0", 26: ":", 27: "0", 28: "0"}


def _sentinel(n: int) -> str:
    return f"\x00{n}\x00"


@cache
def _template() -> tuple[str, ...] | None:
    """The literal text of a task around the values of `_FIELDS` (one piece more than them),
    taken from Python's encoder. None when the fields of `Task` are not `_FIELDS` and `_EMPTY`,
    in that order (then every task goes the model way, and the test of this module fails until
    they are brought in line)."""
    sample = Task(id="t1", title="t", created_at="2026-01-01T00:00:00Z").wire()
    values: dict[str, Any] = {}
    slots: list[str] = []
    for key in sample:
        if key in _FIELDS:
            values[key] = _sentinel(len(slots))
            slots.append(key)
        elif key in _EMPTY:
            values[key] = _EMPTY[key]
        else:
            return None
    if tuple(slots) != _FIELDS:
        return None
    # The task as the second level of an indented list, as `json.dumps` writes it.
    text = json.dumps([values], indent=2, ensure_ascii=False)[2:-2]
    pieces = []
    for n in range(len(slots)):
        before, text = text.split(json.dumps(_sentinel(n)), 1)
        pieces.append(before)
    return (*pieces, text)


def _time(stored: str) -> str | None:
    """A time in the store's own form (`2026-01-02T03:04:05.678+00:00`) as the wire writes it,
    quoted; None for any other form (that task goes the model way)."""
    if len(stored) != 29 or stored[19] != "." or not stored.endswith("+00:00"):
        return None
    millis = stored[20:23]
    return f'"{stored[:19]}Z"' if millis == "000" else f'"{stored[:23]}000Z"'


def _times(stored: Sequence[str]) -> Sequence[str | None]:
    """`_time` of each of a column, by a few passes over the column joined into one text when
    every time is in the store's own form (as nearly always)."""
    text = "\n".join(stored) + "\n"
    lines = len(stored)
    if (
        len(text) != 30 * lines
        or text.count("\n") != lines
        or any(text[at::30] != char * lines for at, char in _STORED_FORM.items())
    ):
        return list(map(_time, stored))
    # Each line is `<19 chars>.<3 chars>+00:00`: its ending is found only at its end.
    text = text.replace(".000+00:00\n", 'Z"\n').replace("+00:00\n", '000Z"\n')
    return ('"' + text[:-1].replace("\n", '\n"')).split("\n")


def _quoted(values: Sequence[str | None]) -> Iterable[str] | str:
    """A column of text or NULL as the encoder writes each value (one text for all NULL)."""
    if values.count(None) == len(values):
        return "null"
    return ["null" if text is None else encode_basestring(text) for text in values]


def _indented(deps: list[str]) -> str:
    """A task's dependencies as the second level of an indented list writes them."""
    if not deps:
        return "[]"
    return "[\n      " + ",\n      ".join(map(encode_basestring, deps)) + "\n    ]"


def _dependencies(depends_on: dict[str, list[str]]) -> dict[str, str]:
    """`_indented` of each task's dependencies."""
    if _ESCAPED.search("".join(chain.from_iterable(depends_on.values()))):
        return {task_id: _indented(deps) for task_id, deps in depends_on.items()}
    # No id the encoder would escape (ids are the store's own `t42`): quoted as they are.
    return {
        task_id: '[\n      "' + '",\n      "'.join(deps) + '"\n    ]'
        for task_id, deps in depends_on.items()
    }


def _dependency_texts(stored: Sequence[str]) -> Iterable[str]:
    """`_indented` of each task's dependencies as its row keeps them (a compact JSON list): by a
    few passes over the column joined into one text when no id holds a character the encoder
    escapes (as nearly always: ids are the store's own `t42`)."""
    text = "\x00".join(stored)
    if "\\" in text:  # an id with an escaped character
        return [_indented(json.loads(deps)) for deps in stored]
    # No quote inside an id (it would be escaped): `["`, `","` and `"]` are the list's own.
    text = text.replace('["', '[\n      "').replace('","', '",\n      "')
    return text.replace('"]', '"\n    ]').split("\x00")


def _written(pieces: tuple[str, ...], values: list[Iterable[Any] | str]) -> list[str]:
    """Each task's text: ``pieces`` around its ``values``, one column per field (a text: the
    same for every task, written into the format once)."""
    form = pieces[0].replace("%", "%%")
    columns = []
    for value, piece in zip(values, pieces[1:], strict=True):
        if isinstance(value, str):
            form += value.replace("%", "%%")
        else:
            form += "%s"
            columns.append(value)
        form += piece.replace("%", "%%")
    return list(map(form.__mod__, zip(*columns, strict=True)))


class TaskJson(TaskRows):
    def task_list_json(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> str:
        """``json.dumps([t.wire() for t in self.list_tasks(...)], indent=2, ensure_ascii=False)``,
        the same text, written without a model per task (see the module)."""
        pieces = _template()
        where, params = _task_filter(plan_id, status)
        with self._read() as db:
            if pieces is None:
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
                created_at,
                updated_at,
                notes,
                budgets_usd,
                budgets_tokens,
                stored_effective,
                stored_blocked,
                stored_depends_on,
            ) = zip(*rows, strict=True)
            graph: list[Iterable[Any] | str]
            if None in stored_effective or None in stored_blocked or None in stored_depends_on:
                # A row written other than through the store: the facts from the graph itself.
                effective, depends_on, blocked = self._graph_facts_of_all(
                    db, None if where else (ids, priorities, statuses)
                )
                graph = [
                    map(effective.__getitem__, ids),
                    map(_dependencies(depends_on).get, ids, repeat("[]")),
                    map(dict.fromkeys(blocked, "true").get, ids, repeat("false")),
                ]
            else:
                graph = [
                    stored_effective,
                    _dependency_texts(stored_depends_on),
                    map(("false", "true").__getitem__, stored_blocked)
                    if any(stored_blocked)
                    else "false",
                ]
            created, updated = _times(created_at), _times(updated_at)
            texts = _written(
                pieces,
                [
                    map(encode_basestring, ids),
                    map(encode_basestring, titles),
                    map(encode_basestring, descriptions),
                    _quoted(plans),
                    priorities,
                    graph[0],
                    graph[1],
                    map(encode_basestring, statuses),
                    graph[2],
                    _quoted(branches),
                    _quoted(worktrees),
                    attempts,
                    dispatches,
                    created,
                    updated,
                    _quoted(notes),
                    "null",  # budget in USD: a task with one goes the model way
                    budgets_tokens,
                ],
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
        # The brackets on the first and last task's text (one task: both on it), so that the
        # whole text is copied once.
        texts[0] = "[\n" + texts[0]
        texts[-1] += "\n]"
        return ",\n".join(texts)

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
