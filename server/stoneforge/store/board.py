"""The lean board: one small row per task (what a tree row shows), read in bulk with a version.

A *lean row* carries what the editor's Tasks view needs for a row, its icon, its description and
the needs-you count: ids, title, status, priorities, blocked, dependencies, the latest session's
and merge request's states, counts of what its children would be, and what it spent. Everything
else of a task (sessions, handoffs, checks, questions, refusals) is read per task, on demand.

The *version* is the id of the newest event the read saw: rows and version come from one snapshot,
so a client that applies the rows of later events (``stoneforge/changed``) knows where it stands.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from stoneforge.models import Event, PlanStatus, TaskStatus
from stoneforge.store.events import event_of
from stoneforge.store.schema import StoreBase
from stoneforge.store.task_graph import TaskGraph

REFUSAL_EVENT = "task.tool_refused"
#: Above this many tasks a delta computes the graph facts of the whole board at once (one pass)
#: rather than a recursive query per task.
FEW_TASKS = 200

_LEAN_COLUMNS = "id, title, plan_id, priority, status, branch, worktree, attempts, note, stacked_on"


@dataclass(frozen=True)
class LeanChanges:
    """The board after some events: its version, the events, the rows they touched."""

    version: int
    events: list[Event]
    plans: list[dict[str, Any]]
    tasks: list[dict[str, Any]]


def _in(ids: Collection[str]) -> str:
    return ",".join("?" * len(ids))


class BoardRows(TaskGraph, StoreBase):
    def lean_board(self) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
        """(version, plans, tasks) of the whole board, from one snapshot; tasks in creation order."""
        with self._read() as db:
            version = self._version(db)
            plans = self._lean_plans(db, None)
            rows = db.execute(f"SELECT {_LEAN_COLUMNS} FROM tasks ORDER BY seq").fetchall()
            tasks = self._lean_rows(db, rows, None)
        return version, plans, tasks

    def lean_tasks(self, task_ids: Collection[str]) -> tuple[int, list[dict[str, Any]]]:
        """(version, rows) of these tasks (unknown ids are left out), from one snapshot."""
        with self._read() as db:
            return self._version(db), self._lean_of(db, task_ids)

    def lean_changes(self, since: int, limit: int = 5000) -> LeanChanges | None:
        """What changed on the board after event ``since``, from one snapshot: the new version,
        the events, and the lean rows of the tasks and plans they touched. None when more than
        ``limit`` events happened (reading the whole board is cheaper then)."""
        with self._read() as db:
            version = self._version(db)
            if version - since > limit:
                return None
            events = [
                event_of(row)
                for row in db.execute("SELECT * FROM events WHERE id > ? ORDER BY id", (since,))
            ]
            plan_ids = {e.entity_id for e in events if e.entity == "plan" and e.entity_id}
            return LeanChanges(
                version=version,
                events=events,
                plans=self._lean_plans(db, plan_ids),
                tasks=self._lean_of(db, self._touched(db, events)),
            )

    def tasks_touched_by(self, events: Iterable[Event]) -> set[str]:
        """The tasks whose lean rows these events may have changed (see :meth:`_touched`)."""
        with self._read() as db:
            return self._touched(db, events)

    def _lean_of(self, db: sqlite3.Connection, task_ids: Collection[str]) -> list[dict[str, Any]]:
        if not task_ids:
            return []
        ids = list(task_ids)
        rows = db.execute(
            f"SELECT {_LEAN_COLUMNS} FROM tasks WHERE id IN ({_in(ids)}) ORDER BY seq", ids
        ).fetchall()
        return self._lean_rows(db, rows, ids if len(ids) <= FEW_TASKS else None)

    @staticmethod
    def _lean_plans(
        db: sqlite3.Connection, plan_ids: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """These plans (None: all of them)."""
        if plan_ids is not None and not plan_ids:
            return []
        ids = list(plan_ids or ())
        where = f"WHERE id IN ({_in(ids)})" if plan_ids is not None else ""
        return [
            {
                "id": row["id"],
                "title": row["title"],
                "goal": row["goal"],
                "status": row["status"],
                "createdAt": row["created_at"],
            }
            for row in db.execute(
                f"SELECT id, title, goal, status, created_at FROM plans {where} ORDER BY seq", ids
            )
        ]

    @staticmethod
    def _touched(db: sqlite3.Connection, events: Iterable[Event]) -> set[str]:
        """The tasks whose lean rows these events may have changed.

        The tasks the events name (a session's or merge request's task looked up) and, for a
        task whose status, priority or dependencies moved, the tasks that wait on it directly
        (``blocked`` follows a dependency's status) and every task it waits on, transitively
        (its effective priority follows its waiters')."""
        direct: set[str] = set()
        spreading: set[str] = set()
        sessions: set[str] = set()
        merge_requests: set[str] = set()
        for event in events:
            if event.entity_id is None:
                continue
            if event.entity == "task":
                direct.add(event.entity_id)
                # Only a task's status, priority or dependencies reach its waiters' and
                # blockers' rows; a title, a note, a session's tokens touch its own row only
                # (a token count moves often: its delta stays one row).
                if event.kind != "task.updated" or "priority" in event.data:
                    spreading.add(event.entity_id)
            elif event.entity == "session":
                sessions.add(event.entity_id)
            elif event.entity == "merge_request":
                merge_requests.add(event.entity_id)
        for table, ids in (("sessions", sessions), ("merge_requests", merge_requests)):
            if ids:
                direct.update(
                    task_id
                    for (task_id,) in db.execute(
                        f"SELECT task_id FROM {table} WHERE id IN ({_in(ids)}) "
                        "AND task_id IS NOT NULL",
                        list(ids),
                    )
                )
        if not spreading:
            return direct
        marks = _in(spreading)
        waiters = {
            task_id
            for (task_id,) in db.execute(
                f"SELECT task_id FROM deps WHERE depends_on IN ({marks})", list(spreading)
            )
        }
        blockers = {
            task_id
            for (task_id,) in db.execute(
                "WITH RECURSIVE up(id) AS ("
                f" SELECT depends_on FROM deps WHERE task_id IN ({marks})"
                " UNION SELECT d.depends_on FROM deps d JOIN up ON d.task_id = up.id)"
                " SELECT id FROM up",
                list(spreading),
            )
        }
        return direct | waiters | blockers

    def titles(self, task_ids: Collection[str]) -> dict[str, str]:
        """Task id -> title, for these tasks (unknown ids left out)."""
        if not task_ids:
            return {}
        ids = list(task_ids)
        with self._read() as db:
            return dict(db.execute(f"SELECT id, title FROM tasks WHERE id IN ({_in(ids)})", ids))

    def blocked_and_ready_counts(self, *, stacking: bool = False) -> tuple[int, int]:
        """How many tasks are blocked (open, a dependency not merged) and how many are ready
        (open, not blocked, of an active plan or none): the rules of the dependency graph, in
        SQL, without loading the board (`stoneforge/status` is asked after every change).
        ``stacking``: a dependency in review does not block (`orchestrator.stacking`)."""
        passing = [TaskStatus.MERGED.value] + ([TaskStatus.REVIEW.value] if stacking else [])
        unmerged_dep = (
            "EXISTS (SELECT 1 FROM deps d JOIN tasks b ON b.id = d.depends_on "
            f"WHERE d.task_id = t.id AND b.status NOT IN ({','.join('?' * len(passing))}))"
        )
        open_ = TaskStatus.OPEN.value
        with self._read() as db:
            blocked = db.execute(
                f"SELECT COUNT(*) FROM tasks t WHERE t.status = ? AND {unmerged_dep}",
                (open_, *passing),
            ).fetchone()[0]
            ready = db.execute(
                "SELECT COUNT(*) FROM tasks t LEFT JOIN plans p ON p.id = t.plan_id "
                "WHERE t.status = ? AND (t.plan_id IS NULL OR p.status = ?) "
                f"AND NOT {unmerged_dep}",
                (open_, PlanStatus.ACTIVE.value, *passing),
            ).fetchone()[0]
        return int(blocked), int(ready)

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def _lean_rows(
        self, db: sqlite3.Connection, rows: list[sqlite3.Row], few: list[str] | None
    ) -> list[dict[str, Any]]:
        """Lean rows of these task rows; ``few``: their ids, to read only theirs (else all)."""
        if not rows:
            return []
        if few is not None:
            effective, depends_on, blocked = self._graph_facts_of_few(db, rows)
            scope, params = f"WHERE task_id IN ({_in(few)})", tuple(few)
        else:
            effective, depends_on, blocked = board_facts(
                [(row[0], row[3], row[4]) for row in rows],
                db.execute("SELECT task_id, depends_on FROM deps ORDER BY rowid").fetchall(),
            )
            scope, params = "WHERE task_id IS NOT NULL", ()
        # SQLite's bare columns beside MAX() come from the row that holds the maximum: the latest.
        sessions = {
            r[0]: r
            for r in db.execute(
                "SELECT task_id, MAX(seq), id, role, status, context_tokens, COUNT(*), "
                "COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(input_tokens + output_tokens), 0) "
                f"FROM sessions {scope} GROUP BY task_id",
                params,
            )
        }
        merge_requests = {
            r[0]: {"id": r[2], "status": r[3]}
            for r in db.execute(
                f"SELECT task_id, MAX(seq), id, status FROM merge_requests {scope} "
                "GROUP BY task_id",
                params,
            )
        }
        handoffs = dict(
            db.execute(f"SELECT task_id, COUNT(*) FROM handoffs {scope} GROUP BY task_id", params)
        )
        event_scope = f"AND entity_id IN ({_in(few)})" if few is not None else ""
        refusals = dict(
            db.execute(
                "SELECT entity_id, COUNT(*) FROM events WHERE kind = ? "
                f"{event_scope} GROUP BY entity_id",
                (REFUSAL_EVENT, *params),
            )
        )
        open_ = TaskStatus.OPEN.value
        out = []
        for row in rows:
            task_id = row[0]
            session = sessions.get(task_id)
            out.append(
                _lean(
                    {
                        "id": task_id,
                        "title": row[1],
                        "planId": row[2],
                        "priority": row[3],
                        "effectivePriority": effective.get(task_id, row[3]),
                        "dependsOn": depends_on.get(task_id, []),
                        "status": row[4],
                        "blocked": row[4] == open_ and task_id in blocked,
                        "branch": row[5],
                        "worktree": row[6],
                        "attempts": row[7],
                        "note": row[8],
                        "stackedOn": list(json.loads(row[9] or "{}")),  # "stacked on t3"
                        "latestSession": None
                        if session is None
                        else {
                            "id": session[2],
                            "role": session[3],
                            "status": session[4],
                            "contextTokens": session[5],
                        },
                        "mergeRequest": merge_requests.get(task_id),
                        "sessionCount": 0 if session is None else session[6],
                        "handoffCount": handoffs.get(task_id, 0),
                        "refusalCount": refusals.get(task_id, 0),
                        "costUsd": 0.0 if session is None else session[7],
                        "tokens": 0 if session is None else session[8],
                    }
                )
            )
        return out


def _lean(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its keys at their defaults (null, 0, false, []): a third of the bytes on
    a big board, where most tasks are open and have no session yet. ``id``, ``title``,
    ``status`` and the priorities are always there."""
    return {k: v for k, v in row.items() if v or k in _ALWAYS}


_ALWAYS = frozenset({"id", "title", "status", "priority", "effectivePriority"})
#: Statuses in which a task waits on nothing and passes no urgency to its dependencies.
_FINISHED = frozenset({TaskStatus.MERGED.value, TaskStatus.CANCELLED.value})


def board_facts(
    tasks: list[tuple[str, int, str]], edges: list[tuple[str, str]]
) -> tuple[dict[str, int], dict[str, list[str]], set[str]]:
    """Effective priorities, dependencies and the blocked set of the whole board, in one pass.

    ``tasks``: (id, priority, status); ``edges``: (waiting task, its dependency). The rules of
    :class:`~stoneforge.graph.DependencyGraph` (a task's effective priority is the most urgent
    among it and the unfinished tasks that wait on it, transitively; an open task is blocked
    while a dependency is not merged), on plain tuples: the board's 10,000 tasks in ~10 ms.
    """
    priority = {task_id: p for task_id, p, _ in tasks}
    status = {task_id: st for task_id, _, st in tasks}
    depends_on: dict[str, list[str]] = {}
    waiters = dict.fromkeys(priority, 0)
    for task_id, dep in edges:
        if task_id in priority and dep in priority:
            depends_on.setdefault(task_id, []).append(dep)
            waiters[dep] += 1
    merged = TaskStatus.MERGED.value
    open_ = TaskStatus.OPEN.value
    blocked = {
        task_id
        for task_id, deps in depends_on.items()
        if status[task_id] == open_ and any(status[d] != merged for d in deps)
    }
    # Kahn's order from the tasks nothing waits on towards their dependencies: every waiter
    # of a task is final before the task is, and pushes its urgency down if it is unfinished.
    effective = dict(priority)
    ready = [task_id for task_id, n in waiters.items() if n == 0]
    while ready:
        task_id = ready.pop()
        mine = effective[task_id]
        unfinished = status[task_id] not in _FINISHED
        for dep in depends_on.get(task_id, ()):
            if unfinished and mine < effective[dep]:
                effective[dep] = mine
            waiters[dep] -= 1
            if waiters[dep] == 0:
                ready.append(dep)
    return effective, depends_on, blocked
