"""The dependency graph read from the tables; its facts for a few tasks via recursive SQL, for
the whole board at once, and as each task's row keeps them (refreshed by every write)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence

from stoneforge.graph import LANDED, STACKABLE, DependencyGraph, Node, effective_priorities
from stoneforge.models import FINISHED_TASK_STATUSES, PlanStatus, TaskStatus
from stoneforge.store.schema import StoreBase


class TaskGraph(StoreBase):
    def _graph(self, db: sqlite3.Connection) -> DependencyGraph:
        active = {
            r[0]
            for r in db.execute("SELECT id FROM plans WHERE status = ?", (PlanStatus.ACTIVE.value,))
        }
        nodes = [
            Node(
                id=task_id,
                priority=priority,
                status=TaskStatus(status),
                created_at=created_at,
                seq=seq,
                plan_active=plan_id is None or plan_id in active,
            )
            for seq, task_id, priority, status, created_at, plan_id in db.execute(
                "SELECT seq, id, priority, status, created_at, plan_id FROM tasks"
            )
        ]
        edges = db.execute("SELECT task_id, depends_on FROM deps ORDER BY rowid").fetchall()
        return DependencyGraph(nodes, [(a, b) for a, b in edges])

    def _ready(self, db: sqlite3.Connection, *, stacking: bool = False) -> list[str]:
        """`DependencyGraph.ready(stacking=...)` from compact rows, without a graph of nodes:
        dispatch reads it every round, in a worker thread whose Python competes with the loop's
        for the GIL. With ``stacking`` a blocker in review does not block (as in the graph)."""
        plain = db.cursor()
        plain.row_factory = None  # tuples
        active = {
            r[0]
            for r in plain.execute(
                "SELECT id FROM plans WHERE status = ?", (PlanStatus.ACTIVE.value,)
            )
        }
        priority: dict[str, int] = {}
        status: dict[str, str] = {}
        order: dict[str, tuple[str, int]] = {}
        open_ = TaskStatus.OPEN.value
        for task_id, task_priority, task_status, created_at, seq, plan_id in plain.execute(
            "SELECT id, priority, status, created_at, seq, plan_id FROM tasks"
        ):
            priority[task_id] = task_priority
            status[task_id] = task_status
            if task_status == open_ and (plan_id is None or plan_id in active):
                order[task_id] = (created_at, seq)
        depends_on: dict[str, list[str]] = {}
        merged = TaskStatus.MERGED.value
        passing = {s.value for s in (STACKABLE if stacking else LANDED)}
        for task_id, dep in plain.execute("SELECT task_id, depends_on FROM deps"):
            depends_on.setdefault(task_id, []).append(dep)
            if task_id in order and status.get(dep, merged) not in passing:
                del order[task_id]  # blocked
        finished = {s.value for s in FINISHED_TASK_STATUSES}
        unfinished = {t for t, s in status.items() if s not in finished}
        effective = effective_priorities(priority, unfinished, depends_on)
        return sorted(order, key=lambda t: (effective[t], *order[t]))

    def graph(self) -> DependencyGraph:
        with self._read() as db:
            return self._graph(db)

    def _graph_facts_of_all(
        self,
        db: sqlite3.Connection,
        board: tuple[Sequence[str], Sequence[int], Sequence[str]] | None = None,
    ) -> tuple[dict[str, int], dict[str, list[str]], set[str]]:
        """Effective priority, dependencies and the blocked set, for the whole board at once.

        ``board``: the ids, priorities and statuses of every task (three columns), when the caller
        has read them already.
        Straight from compact rows (no graph of nodes): `sf task list` of 10,000 tasks is timed.
        Same rules as :class:`~stoneforge.graph.DependencyGraph`.
        """
        plain = db.cursor()
        plain.row_factory = None  # tuples: a third faster than rows by name on 40,000 rows
        if board is None:
            rows = plain.execute("SELECT id, priority, status FROM tasks").fetchall()
            board = tuple(zip(*rows, strict=True)) if rows else ((), (), ())  # type: ignore[assignment]
        ids, priorities, statuses = board
        grouped: defaultdict[str, list[str]] = defaultdict(list)
        for task_id, dep in plain.execute("SELECT task_id, depends_on FROM deps ORDER BY rowid"):
            grouped[task_id].append(dep)
        depends_on: dict[str, list[str]] = grouped
        grouped.default_factory = None  # a plain dict from here: a missing key is not made
        open_, merged = TaskStatus.OPEN.value, TaskStatus.MERGED.value
        finished = {s.value for s in FINISHED_TASK_STATUSES}
        # Open with a dependency (on a known task) that is not merged.
        unmerged = {t for t, s in zip(ids, statuses, strict=True) if s != merged}
        blocked = {
            t
            for t, s in zip(ids, statuses, strict=True)
            if s == open_ and (deps := depends_on.get(t)) and not unmerged.isdisjoint(deps)
        }
        unfinished = {t for t, s in zip(ids, statuses, strict=True) if s not in finished}
        priority = dict(zip(ids, priorities, strict=True))
        return effective_priorities(priority, unfinished, depends_on), depends_on, blocked

    def _graph_facts_of_few(
        self, db: sqlite3.Connection, rows: list[sqlite3.Row]
    ) -> tuple[dict[str, int], dict[str, list[str]], set[str]]:
        """The same facts for a few tasks, without loading the board (one task per write).

        Same rules as :class:`~stoneforge.graph.DependencyGraph`: blocked is an open task with an
        unmerged dependency; effective priority is the most urgent priority among the task and
        every task that (transitively) waits on it, through unfinished tasks only.
        """
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        depends_on: dict[str, list[str]] = {}
        unmerged: set[str] = set()
        for task_id, dep, dep_status in db.execute(
            f"SELECT d.task_id, d.depends_on, t.status FROM deps d "
            f"JOIN tasks t ON t.id = d.depends_on WHERE d.task_id IN ({marks}) ORDER BY d.rowid",
            ids,
        ):
            depends_on.setdefault(task_id, []).append(dep)
            if dep_status != TaskStatus.MERGED.value:
                unmerged.add(task_id)
        blocked = {
            row["id"]
            for row in rows
            if row["status"] == TaskStatus.OPEN.value and row["id"] in unmerged
        }
        effective: dict[str, int] = {}
        for task_id in ids:
            effective[task_id] = db.execute(
                "WITH RECURSIVE waiters(id) AS ("
                " VALUES(?)"
                " UNION SELECT d.task_id FROM deps d JOIN waiters w ON d.depends_on = w.id"
                " JOIN tasks t ON t.id = d.task_id WHERE t.status NOT IN (?, ?))"
                " SELECT MIN(t.priority) FROM waiters w JOIN tasks t ON t.id = w.id",
                (task_id, TaskStatus.MERGED.value, TaskStatus.CANCELLED.value),
            ).fetchone()[0]
        return effective, depends_on, blocked

    # -- the facts kept in each task's row (schema version 6) ----------------------------------

    def _migrated(self, db: sqlite3.Connection, version: int) -> None:
        super()._migrated(db, version)
        if version < 6:
            self._store_graph_facts(db)

    def stored_graph_facts(self) -> dict[str, tuple[int | None, bool | None, list[str] | None]]:
        """Each task's graph facts as its row keeps them: (effective priority, blocked,
        dependencies); None where not known. Equal to the graph's own at every write's end."""
        with self._read() as db:
            return {
                task_id: (
                    effective,
                    None if blocked is None else bool(blocked),
                    None if deps is None else json.loads(deps),
                )
                for task_id, effective, blocked, deps in db.execute(
                    "SELECT id, effective_priority, blocked, depends_on_list FROM tasks"
                )
            }

    def refresh_graph_facts(self) -> None:
        """Recompute every task's stored graph facts from the tables: after rows were written
        other than through the store (a bulk set-up, a restore)."""
        with self._write() as db:
            self._store_graph_facts(db)

    def _store_graph_facts(self, db: sqlite3.Connection) -> None:
        effective, depends_on, blocked = self._graph_facts_of_all(db)
        db.executemany(
            "UPDATE tasks SET effective_priority = ?, blocked = ?, depends_on_list = ? WHERE id = ?",
            [
                (value, int(task_id in blocked), _json_list(depends_on.get(task_id, [])), task_id)
                for task_id, value in effective.items()
            ],
        )

    def _refresh_graph_facts(self, db: sqlite3.Connection, task_ids: Iterable[str]) -> None:
        """Bring the stored graph facts up to date after a write that touched ``task_ids`` (a new
        task, a new dependency of one, a change of its status or priority), in its transaction.

        Dependencies change only for the touched tasks; blocked for them and (a status) their
        dependents; effective priority flows from a task to its blockers: each one whose value
        changes passes the change on to its own (the graph is acyclic, so it ends). Same rules
        as :class:`~stoneforge.graph.DependencyGraph`, which the tests hold them to.
        """
        plain = db.cursor()
        plain.row_factory = None
        touched = list(dict.fromkeys(task_ids))
        open_, merged = TaskStatus.OPEN.value, TaskStatus.MERGED.value
        blocked = (
            "UPDATE tasks SET blocked = (status = ? AND EXISTS (SELECT 1 FROM deps d "
            "JOIN tasks b ON b.id = d.depends_on WHERE d.task_id = tasks.id AND b.status != ?)) "
        )
        pending: deque[str] = deque(touched)
        for task_id in touched:
            deps = [
                row[0]
                for row in plain.execute(
                    "SELECT depends_on FROM deps WHERE task_id = ? ORDER BY rowid", (task_id,)
                )
            ]
            pending.extend(deps)
            plain.execute(
                "UPDATE tasks SET depends_on_list = ? WHERE id = ?", (_json_list(deps), task_id)
            )
            plain.execute(blocked + "WHERE id = ?", (open_, merged, task_id))
            plain.execute(
                blocked + "WHERE id IN (SELECT task_id FROM deps WHERE depends_on = ?)",
                (open_, merged, task_id),
            )
        finished = sorted(s.value for s in FINISHED_TASK_STATUSES)
        marks = ",".join("?" * len(finished))
        queued = set(pending)
        while pending:
            task_id = pending.popleft()
            queued.discard(task_id)
            row = plain.execute(
                "SELECT effective_priority, min(priority, ifnull((SELECT min(w.effective_priority)"
                " FROM deps e JOIN tasks w ON w.id = e.task_id WHERE e.depends_on = t.id"
                f" AND w.status NOT IN ({marks})), priority)) FROM tasks t WHERE id = ?",
                (*finished, task_id),
            ).fetchone()
            if row is None or row[0] == row[1]:
                continue  # not a task (yet), or unchanged: nothing to pass on
            plain.execute("UPDATE tasks SET effective_priority = ? WHERE id = ?", (row[1], task_id))
            for (blocker,) in plain.execute(
                "SELECT depends_on FROM deps WHERE task_id = ?", (task_id,)
            ).fetchall():
                if blocker not in queued:
                    queued.add(blocker)
                    pending.append(blocker)


def _json_list(ids: list[str]) -> str:
    """A task's dependencies as its row keeps them: a compact JSON list."""
    return json.dumps(ids, ensure_ascii=False, separators=(",", ":"))
