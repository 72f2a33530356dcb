"""SQLite persistence and the append-only event log. The only module that speaks SQL.

Several processes share one store (a `sf serve` in a terminal, the CLI, the language server), so:
WAL journal, a generous busy timeout, and every write in a ``BEGIN IMMEDIATE`` transaction that
also appends its event, so no write is lost and every change is visible in the log.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from stoneforge.errors import (
    InvalidInputError,
    InvalidTransitionError,
    LeaseHeldError,
    NotFoundError,
)
from stoneforge.graph import DependencyGraph, Node, check_new_dependency
from stoneforge.models import (
    AgentSession,
    CheckRun,
    Event,
    Handoff,
    MergeRequest,
    MergeStatus,
    Plan,
    PlanStatus,
    SessionRole,
    SessionStatus,
    Task,
    TaskQuestion,
    TaskStatus,
    utcnow,
)
from stoneforge.redact import redact

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

_SCHEMA_V1 = """
CREATE TABLE plans (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    goal TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    plan_id TEXT REFERENCES plans(id),
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    branch TEXT,
    worktree TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    note TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tasks_status ON tasks(status);
CREATE TABLE deps (
    task_id TEXT NOT NULL REFERENCES tasks(id),
    depends_on TEXT NOT NULL REFERENCES tasks(id),
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX deps_blocker ON deps(depends_on);
CREATE TABLE sessions (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT REFERENCES tasks(id),
    role TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    owner_pid INTEGER,
    provider_session_id TEXT,
    context_tokens INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    error TEXT
);
CREATE INDEX sessions_task ON sessions(task_id);
CREATE INDEX sessions_status ON sessions(status);
CREATE TABLE handoffs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    session_id TEXT,
    body TEXT NOT NULL,
    commit_sha TEXT,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX handoffs_task ON handoffs(task_id);
CREATE TABLE merge_requests (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    status TEXT NOT NULL,
    branch TEXT NOT NULL,
    candidate_commit TEXT,
    merged_commit TEXT,
    checks TEXT NOT NULL DEFAULT '[]',
    summary TEXT NOT NULL DEFAULT '',
    reason TEXT,
    approved_at TEXT,
    created_at TEXT NOT NULL,
    merged_at TEXT
);
CREATE INDEX merge_requests_task ON merge_requests(task_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    entity TEXT NOT NULL,
    entity_id TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_kind ON events(kind, id);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder_pid INTEGER NOT NULL,
    holder_host TEXT NOT NULL,
    token TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL
);
"""

#: Schema migrations, index i brings the database from version i to i + 1.
_MIGRATIONS: list[str] = [_SCHEMA_V1]

#: How error messages name the rows of each table.
_NOUNS = {
    "plans": "plan",
    "tasks": "task",
    "sessions": "session",
    "merge_requests": "merge request",
}

_TASK_COLUMNS = (
    "seq, id, title, description, plan_id, priority, status, branch, worktree, attempts, note, "
    "created_at, updated_at"
)


#: Event kinds whose rows carry state read back by the store (not just history).
QUESTION_EVENT = "task.question"
DIRECTOR_SESSION_EVENT = "director.session"


@dataclass(frozen=True)
class PlannedTask:
    """One task of a plan created in one go; ``depends_on`` names other tasks by ``key``."""

    key: str
    title: str
    description: str = ""
    priority: int = 3
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirectorSessionRef:
    """Where a plan's persistent director conversation lives, to resume it.

    The provider resumes a conversation from its transcript, which lives in ``config_dir``
    under a project directory named after ``cwd``: both must be the same on every resume.
    """

    plan_id: str | None
    session_id: str | None
    provider_session_id: str
    config_dir: str
    cwd: str


def planned_task_problems(tasks: Sequence[PlannedTask]) -> list[str]:
    """Why these tasks cannot make a plan (empty when they can): empty titles, priorities
    outside 1-5, and everything :func:`dependency_problems` finds."""
    problems: list[str] = []
    for index, task in enumerate(tasks, 1):
        name = f"task {task.key!r}" if task.key else f"task #{index}"
        if not task.title.strip():
            problems.append(f"{name}: the title is empty")
        if not 1 <= task.priority <= 5:
            problems.append(f"{name}: priority must be 1 (most urgent) to 5, got {task.priority}")
    return problems + dependency_problems(tasks)


def dependency_problems(tasks: Sequence[PlannedTask]) -> list[str]:
    """Empty or duplicate keys, dependencies on unknown keys or on the task itself, cycles."""
    problems: list[str] = []
    keys = {task.key for task in tasks}
    seen: set[str] = set()
    for index, task in enumerate(tasks, 1):
        name = f"task {task.key!r}"
        if not task.key.strip():
            problems.append(f"task #{index} has an empty key")
        elif task.key in seen:
            problems.append(f"{name}: the key is used by more than one task")
        seen.add(task.key)
        for dep in task.depends_on:
            if dep == task.key:
                problems.append(f"{name} depends on itself")
            elif dep not in keys:
                problems.append(f"{name} depends on unknown key {dep!r}")
    return problems + dependency_cycles(tasks)


def dependency_cycles(tasks: Sequence[PlannedTask]) -> list[str]:
    """Each dependency cycle among ``tasks`` once, as ``a -> b -> a`` (a depends on b...)."""
    keys = {task.key for task in tasks}
    nodes = [Node(id=key, priority=3, status=TaskStatus.OPEN, created_at="") for key in keys]
    edges = {
        (task.key, dep)
        for task in tasks
        for dep in task.depends_on
        if dep in keys and dep != task.key
    }
    graph = DependencyGraph(nodes, sorted(edges))
    found: list[str] = []
    covered: set[frozenset[str]] = set()
    for task in tasks:
        for dep in task.depends_on:
            if (task.key, dep) not in edges:
                continue
            back = graph.path(dep, task.key)
            if back is None:
                continue
            members = frozenset(back)
            if members in covered:
                continue
            covered.add(members)
            found.append("dependency cycle: " + " -> ".join([task.key, *back]))
    return found


def _iso(moment: datetime | None) -> str | None:
    # Fixed width, so text order is time order.
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def default_actor() -> str:
    return f"pid:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """One connection to `.stoneforge/state.db`; safe to share between threads."""

    def __init__(self, path: Path, actor: str | None = None) -> None:
        self.path = path
        self.actor = actor or default_actor()
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database write lock up front (no upgrade races)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise InvalidInputError(
                    f"{self.path}: schema version {version} is newer than this stoneforge "
                    f"understands ({SCHEMA_VERSION}); upgrade stoneforge"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        db.execute(statement)
            if version != SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _event(
        self,
        db: sqlite3.Connection,
        kind: str,
        entity: str,
        entity_id: str | None,
        data: dict[str, Any] | None = None,
    ) -> None:
        payload = redact(json.dumps(data or {}, default=str))
        db.execute(
            "INSERT INTO events (at, actor, kind, entity, entity_id, data) VALUES (?,?,?,?,?,?)",
            (_iso(utcnow()), self.actor, kind, entity, entity_id, payload),
        )

    @staticmethod
    def _require(
        db: sqlite3.Connection, table: str, entity_id: str, columns: str = "*"
    ) -> sqlite3.Row:
        """The row with this id, or :class:`NotFoundError` naming what is missing."""
        row = db.execute(f"SELECT {columns} FROM {table} WHERE id = ?", (entity_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no {_NOUNS[table]} with id {entity_id!r}")
        return row

    @staticmethod
    def _next_id(db: sqlite3.Connection, table: str, prefix: str) -> tuple[int, str]:
        # Safe under BEGIN IMMEDIATE: no other writer can take the same number.
        seq = db.execute(f"SELECT COALESCE(MAX(seq), 0) + 1 FROM {table}").fetchone()[0]
        return seq, f"{prefix}{seq}"

    # -- plans ---------------------------------------------------------------------------------

    def create_plan(self, title: str, goal: str | None = None) -> Plan:
        title = title.strip()
        if not title:
            raise InvalidInputError("plan title must not be empty")
        now = utcnow()
        with self._write() as db:
            seq, plan_id = self._next_id(db, "plans", "p")
            db.execute(
                "INSERT INTO plans (seq, id, title, goal, status, created_at) VALUES (?,?,?,?,?,?)",
                (seq, plan_id, title, goal, PlanStatus.DRAFT.value, _iso(now)),
            )
            self._event(db, "plan.created", "plan", plan_id, {"title": title})
        return self.get_plan(plan_id)

    def create_plan_with_tasks(
        self, title: str, goal: str | None, tasks: Sequence[PlannedTask]
    ) -> Plan:
        """A draft plan with its tasks and their dependencies, all or nothing.

        Tasks get ids in the given order; their ``depends_on`` keys become dependency edges.
        Invalid input (see :func:`planned_task_problems`) raises before anything is written.
        """
        title = title.strip()
        if not title:
            raise InvalidInputError("plan title must not be empty")
        problems = planned_task_problems(tasks)
        if problems:
            raise InvalidInputError("the plan's tasks are invalid: " + "; ".join(problems))
        now = _iso(utcnow())
        with self._write() as db:
            seq, plan_id = self._next_id(db, "plans", "p")
            db.execute(
                "INSERT INTO plans (seq, id, title, goal, status, created_at) VALUES (?,?,?,?,?,?)",
                (seq, plan_id, title, goal, PlanStatus.DRAFT.value, now),
            )
            self._event(db, "plan.created", "plan", plan_id, {"title": title, "tasks": len(tasks)})
            ids: dict[str, str] = {}
            for task in tasks:
                task_seq, task_id = self._next_id(db, "tasks", "t")
                ids[task.key] = task_id
                db.execute(
                    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        task_seq,
                        task_id,
                        task.title.strip(),
                        task.description,
                        plan_id,
                        task.priority,
                        TaskStatus.OPEN.value,
                        None,
                        None,
                        0,
                        None,
                        now,
                        now,
                    ),
                )
            for task in tasks:
                depends_on = [ids[dep] for dep in dict.fromkeys(task.depends_on)]
                for dep in depends_on:
                    db.execute(
                        "INSERT INTO deps (task_id, depends_on) VALUES (?, ?)", (ids[task.key], dep)
                    )
                self._event(
                    db,
                    "task.created",
                    "task",
                    ids[task.key],
                    {"title": task.title.strip(), "planId": plan_id, "dependsOn": depends_on},
                )
        return self.get_plan(plan_id)

    def set_director_session(
        self,
        plan_id: str | None,
        *,
        session_id: str | None,
        provider_session_id: str,
        config_dir: Path | str,
        cwd: Path | str,
    ) -> DirectorSessionRef:
        """Remember the conversation a plan's director continues (``None``: tasks of no plan)."""
        data = {
            "sessionId": session_id,
            "providerSessionId": provider_session_id,
            "configDir": str(config_dir),
            "cwd": str(cwd),
        }
        with self._write() as db:
            if plan_id is not None:
                self._require(db, "plans", plan_id, "1")
            self._event(db, DIRECTOR_SESSION_EVENT, "plan", plan_id, data)
        return DirectorSessionRef(
            plan_id, session_id, provider_session_id, str(config_dir), str(cwd)
        )

    def director_session(self, plan_id: str | None) -> DirectorSessionRef | None:
        """The conversation the plan's director continues, if it has one."""
        with self._read() as db:
            row = db.execute(
                "SELECT data FROM events WHERE kind = ? AND entity_id IS ? ORDER BY id DESC LIMIT 1",
                (DIRECTOR_SESSION_EVENT, plan_id),
            ).fetchone()
        if row is None:
            return None
        data = json.loads(row["data"])
        return DirectorSessionRef(
            plan_id,
            data.get("sessionId"),
            data["providerSessionId"],
            data["configDir"],
            data["cwd"],
        )

    def _plan_from_row(self, row: sqlite3.Row, task_ids: list[str]) -> Plan:
        return Plan(
            id=row["id"],
            title=row["title"],
            goal=row["goal"],
            status=PlanStatus(row["status"]),
            created_at=_time(row["created_at"]),
            task_ids=task_ids,
        )

    def get_plan(self, plan_id: str) -> Plan:
        with self._read() as db:
            row = self._require(db, "plans", plan_id)
            task_ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM tasks WHERE plan_id = ? ORDER BY seq", (plan_id,)
                )
            ]
        return self._plan_from_row(row, task_ids)

    def list_plans(self) -> list[Plan]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM plans ORDER BY seq").fetchall()
            members: dict[str, list[str]] = {}
            for task_id, plan_id in db.execute(
                "SELECT id, plan_id FROM tasks WHERE plan_id IS NOT NULL ORDER BY seq"
            ):
                members.setdefault(plan_id, []).append(task_id)
        return [self._plan_from_row(row, members.get(row["id"], [])) for row in rows]

    def activate_plan(self, plan_id: str) -> Plan:
        with self._write() as db:
            row = self._require(db, "plans", plan_id, "status")
            if row["status"] != PlanStatus.ACTIVE.value:
                db.execute(
                    "UPDATE plans SET status = ? WHERE id = ?", (PlanStatus.ACTIVE.value, plan_id)
                )
                self._event(db, "plan.activated", "plan", plan_id)
        return self.get_plan(plan_id)

    # -- tasks ---------------------------------------------------------------------------------

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

    def graph(self) -> DependencyGraph:
        with self._read() as db:
            return self._graph(db)

    def create_task(
        self,
        title: str,
        *,
        description: str = "",
        plan_id: str | None = None,
        priority: int = 3,
        depends_on: Sequence[str] = (),
    ) -> Task:
        title = title.strip()
        if not title:
            raise InvalidInputError("task title must not be empty")
        if not 1 <= priority <= 5:
            raise InvalidInputError(f"priority must be 1 (most urgent) to 5, got {priority}")
        now = _iso(utcnow())
        with self._write() as db:
            if plan_id is not None:
                self._require(db, "plans", plan_id, "1")
            unknown = [
                dep
                for dep in depends_on
                if not db.execute("SELECT 1 FROM tasks WHERE id = ?", (dep,)).fetchone()
            ]
            if unknown:
                raise NotFoundError(
                    f"unknown dependency id(s) for new task {title!r}: {', '.join(unknown)}"
                )
            seq, task_id = self._next_id(db, "tasks", "t")
            db.execute(
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    task_id,
                    title,
                    description,
                    plan_id,
                    priority,
                    TaskStatus.OPEN.value,
                    None,
                    None,
                    0,
                    None,
                    now,
                    now,
                ),
            )
            for dep in dict.fromkeys(depends_on):
                db.execute("INSERT INTO deps (task_id, depends_on) VALUES (?, ?)", (task_id, dep))
            self._event(
                db,
                "task.created",
                "task",
                task_id,
                {"title": title, "planId": plan_id, "dependsOn": list(depends_on)},
            )
        return self.get_task(task_id)

    def add_dependency(self, blocked: str, blocker: str) -> Task:
        with self._write() as db:
            graph = self._graph(db)
            titles = dict(db.execute("SELECT id, title FROM tasks").fetchall())
            problem = check_new_dependency(graph, blocked, blocker, titles)
            if problem is not None:
                error = NotFoundError if problem.startswith("unknown") else InvalidInputError
                raise error(problem)
            db.execute(
                "INSERT OR IGNORE INTO deps (task_id, depends_on) VALUES (?, ?)", (blocked, blocker)
            )
            self._event(db, "dep.added", "task", blocked, {"dependsOn": blocker})
        return self.get_task(blocked)

    def _task_rows(
        self, db: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()
    ) -> list[sqlite3.Row]:
        return db.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks {where} ORDER BY seq", params
        ).fetchall()

    def _assemble(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Task]:
        """Tasks with their computed fields, sessions, handoffs and merge request, in bulk."""
        if not rows:
            return []
        wanted = {row["id"] for row in rows}
        few = len(wanted) <= 50
        marks = ",".join("?" * len(wanted))
        effective, depends_on, blocked = (
            self._graph_facts_of_few(db, rows) if few else self._graph_facts_of_all(db)
        )
        scope = f"WHERE task_id IN ({marks})" if few else ""
        params = tuple(wanted) if few else ()
        sessions: dict[str, list[AgentSession]] = {}
        for row in db.execute(f"SELECT * FROM sessions {scope} ORDER BY seq", params):
            sessions.setdefault(row["task_id"], []).append(self._session_from_row(row))
        handoffs: dict[str, list[Handoff]] = {}
        for row in db.execute(f"SELECT * FROM handoffs {scope} ORDER BY seq", params):
            handoffs.setdefault(row["task_id"], []).append(self._handoff_from_row(row))
        merge_requests: dict[str, MergeRequest] = {}
        for row in db.execute(f"SELECT * FROM merge_requests {scope} ORDER BY seq", params):
            merge_requests[row["task_id"]] = self._mr_from_row(row)  # the latest wins
        questions: dict[str, list[TaskQuestion]] = {}
        event_scope = f"AND entity_id IN ({marks})" if few else ""
        for row in db.execute(
            f"SELECT entity_id, at, data FROM events WHERE kind = ? {event_scope} ORDER BY id",
            (QUESTION_EVENT, *params),
        ):
            data = json.loads(row["data"])
            questions.setdefault(row["entity_id"], []).append(
                TaskQuestion(
                    question=data.get("question", ""),
                    answer=data.get("answer", ""),
                    session_id=data.get("sessionId"),
                    error=data.get("error"),
                    asked_at=_time(data.get("askedAt")),
                    answered_at=_time(row["at"]),
                )
            )
        return [
            Task(
                id=row["id"],
                title=row["title"],
                description=row["description"],
                plan_id=row["plan_id"],
                priority=row["priority"],
                effective_priority=effective.get(row["id"], row["priority"]),
                depends_on=depends_on.get(row["id"], []),
                status=TaskStatus(row["status"]),
                blocked=row["id"] in blocked,
                branch=row["branch"],
                worktree=row["worktree"],
                attempts=row["attempts"],
                created_at=_time(row["created_at"]),
                updated_at=_time(row["updated_at"]),
                note=row["note"],
                sessions=sessions.get(row["id"], []),
                handoffs=handoffs.get(row["id"], []),
                merge_request=merge_requests.get(row["id"]),
                questions=questions.get(row["id"], []),
            )
            for row in rows
        ]

    def _graph_facts_of_all(
        self, db: sqlite3.Connection
    ) -> tuple[dict[str, int], dict[str, list[str]], set[str]]:
        """Effective priority, dependencies and the blocked set, for the whole board at once."""
        graph = self._graph(db)
        blocked = {task_id for task_id in graph.nodes if graph.is_blocked(task_id)}
        return graph.effective_priorities(), graph.depends_on, blocked

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

    def get_task(self, task_id: str) -> Task:
        with self._read() as db:
            rows = self._task_rows(db, "WHERE id = ?", (task_id,))
            if not rows:
                raise NotFoundError(f"no task with id {task_id!r}")
            return self._assemble(db, rows)[0]

    def list_tasks(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> list[Task]:
        clauses, params = [], []
        if plan_id is not None:
            clauses.append("plan_id = ?")
            params.append(plan_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._read() as db:
            return self._assemble(db, self._task_rows(db, where, params))

    def ready_task_ids(self) -> list[str]:
        """Open, unblocked tasks of active plans (or none), most urgent first, then oldest."""
        return self.graph().ready()

    def update_task(
        self,
        task_id: str,
        *,
        expect: Sequence[TaskStatus] | None = None,
        kind: str = "task.updated",
        **fields: Any,
    ) -> Task:
        """Change task columns; with ``expect``, only when the task is in one of those statuses."""
        allowed = {"status", "branch", "worktree", "attempts", "note", "priority", "title"}
        if not set(fields) <= allowed:
            raise InvalidInputError(f"cannot update task fields {sorted(set(fields) - allowed)}")
        values = {k: (v.value if isinstance(v, TaskStatus) else v) for k, v in fields.items()}
        with self._write() as db:
            row = self._require(db, "tasks", task_id, "status")
            if expect is not None and TaskStatus(row["status"]) not in expect:
                wanted = ", ".join(s.value for s in expect)
                raise InvalidTransitionError(
                    f"task {task_id} is {row['status']}; this needs it to be {wanted}"
                )
            values["updated_at"] = _iso(utcnow())
            assignments = ", ".join(f"{column} = ?" for column in values)
            db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), task_id))
            self._event(db, kind, "task", task_id, {"from": row["status"], **values})
        return self.get_task(task_id)

    def cancel_task(self, task_id: str) -> Task:
        return self.update_task(
            task_id,
            status=TaskStatus.CANCELLED,
            expect=[TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW, TaskStatus.FAILED],
            kind="task.cancelled",
        )

    def retry_task(self, task_id: str) -> Task:
        return self.update_task(
            task_id,
            status=TaskStatus.OPEN,
            attempts=0,
            expect=[TaskStatus.FAILED, TaskStatus.CANCELLED],
            kind="task.retried",
        )

    def record_question(
        self,
        task_id: str,
        question: str,
        answer: str,
        *,
        session_id: str | None = None,
        error: str | None = None,
        asked_at: datetime | None = None,
    ) -> TaskQuestion:
        """Store a worker's question to the director and the answer it got, on the task."""
        with self._write() as db:
            self._require(db, "tasks", task_id, "1")
            self._event(
                db,
                QUESTION_EVENT,
                "task",
                task_id,
                {
                    "question": question,
                    "answer": answer,
                    "sessionId": session_id,
                    "error": error,
                    "askedAt": _iso(asked_at),
                },
            )
        return self.get_task(task_id).questions[-1]

    # -- sessions ------------------------------------------------------------------------------

    @staticmethod
    def _session_from_row(row: sqlite3.Row) -> AgentSession:
        return AgentSession(
            id=row["id"],
            task_id=row["task_id"],
            role=SessionRole(row["role"]),
            status=SessionStatus(row["status"]),
            pid=row["pid"],
            provider_session_id=row["provider_session_id"],
            context_tokens=row["context_tokens"],
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cost_usd=row["cost_usd"],
            started_at=_time(row["started_at"]),
            ended_at=_time(row["ended_at"]),
            error=row["error"],
        )

    def start_session(self, task_id: str | None, role: SessionRole) -> AgentSession:
        with self._write() as db:
            seq, session_id = self._next_id(db, "sessions", "s")
            db.execute(
                "INSERT INTO sessions (seq, id, task_id, role, status, owner_pid, started_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    seq,
                    session_id,
                    task_id,
                    role.value,
                    SessionStatus.RUNNING.value,
                    os.getpid(),
                    _iso(utcnow()),
                ),
            )
            self._event(db, "session.started", "session", session_id, {"taskId": task_id})
        return self.get_session(session_id)

    def get_session(self, session_id: str) -> AgentSession:
        with self._read() as db:
            row = self._require(db, "sessions", session_id)
        return self._session_from_row(row)

    def update_session(self, session_id: str, **fields: Any) -> AgentSession:
        allowed = {
            "status",
            "pid",
            "provider_session_id",
            "context_tokens",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "ended_at",
            "error",
        }
        if not set(fields) <= allowed:
            raise InvalidInputError(f"cannot update session fields {sorted(set(fields) - allowed)}")
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, SessionStatus):
                value = value.value
            elif isinstance(value, datetime):
                value = _iso(value)
            elif key == "error" and value is not None:
                value = redact(str(value))
            values[key] = value
        with self._write() as db:
            assignments = ", ".join(f"{column} = ?" for column in values)
            cursor = db.execute(
                f"UPDATE sessions SET {assignments} WHERE id = ?", (*values.values(), session_id)
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no session with id {session_id!r}")
            self._event(db, "session.updated", "session", session_id, values)
        return self.get_session(session_id)

    def list_sessions(
        self, *, status: SessionStatus | None = None, task_id: str | None = None
    ) -> list[AgentSession]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._read() as db:
            rows = db.execute(f"SELECT * FROM sessions {where} ORDER BY seq", params).fetchall()
        return [self._session_from_row(row) for row in rows]

    def orphaned_sessions(self) -> list[tuple[AgentSession, int | None]]:
        """Sessions still marked running, with the pid of the orchestrator that started them."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM sessions WHERE status = ? ORDER BY seq",
                (SessionStatus.RUNNING.value,),
            ).fetchall()
        return [(self._session_from_row(row), row["owner_pid"]) for row in rows]

    # -- handoffs ------------------------------------------------------------------------------

    @staticmethod
    def _handoff_from_row(row: sqlite3.Row) -> Handoff:
        body = json.loads(row["body"])
        return Handoff(
            id=row["id"],
            task_id=row["task_id"],
            session_id=row["session_id"],
            commit=row["commit_sha"],
            source=row["source"],
            created_at=_time(row["created_at"]),
            **body,
        )

    def add_handoff(self, handoff: Handoff) -> Handoff:
        if handoff.task_id is None:
            raise InvalidInputError("a handoff must name its task")
        body = handoff.model_dump(
            include={
                "done",
                "remaining",
                "files_touched",
                "decisions",
                "failing_tests",
                "next_step",
            }
        )
        with self._write() as db:
            seq, handoff_id = self._next_id(db, "handoffs", "h")
            db.execute(
                "INSERT INTO handoffs (seq, id, task_id, session_id, body, commit_sha, source, "
                "created_at) VALUES (?,?,?,?,?,?,?,?)",
                (
                    seq,
                    handoff_id,
                    handoff.task_id,
                    handoff.session_id,
                    redact(json.dumps(body)),
                    handoff.commit,
                    handoff.source,
                    _iso(handoff.created_at),
                ),
            )
            self._event(db, "handoff.created", "task", handoff.task_id, {"handoffId": handoff_id})
            row = db.execute("SELECT * FROM handoffs WHERE id = ?", (handoff_id,)).fetchone()
        return self._handoff_from_row(row)

    def list_handoffs(self, task_id: str | None = None) -> list[Handoff]:
        with self._read() as db:
            if task_id is None:
                rows = db.execute("SELECT * FROM handoffs ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM handoffs WHERE task_id = ? ORDER BY seq", (task_id,)
                ).fetchall()
        return [self._handoff_from_row(row) for row in rows]

    # -- merge requests ------------------------------------------------------------------------

    @staticmethod
    def _mr_from_row(row: sqlite3.Row) -> MergeRequest:
        return MergeRequest(
            id=row["id"],
            task_id=row["task_id"],
            status=MergeStatus(row["status"]),
            branch=row["branch"],
            candidate_commit=row["candidate_commit"],
            merged_commit=row["merged_commit"],
            checks=[CheckRun.model_validate(c) for c in json.loads(row["checks"])],
            summary=row["summary"],
            reason=row["reason"],
            approved_at=_time(row["approved_at"]),
            created_at=_time(row["created_at"]),
            merged_at=_time(row["merged_at"]),
        )

    def create_merge_request(self, task_id: str, branch: str, summary: str) -> MergeRequest:
        with self._write() as db:
            seq, mr_id = self._next_id(db, "merge_requests", "mr")
            db.execute(
                "INSERT INTO merge_requests (seq, id, task_id, status, branch, summary, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    seq,
                    mr_id,
                    task_id,
                    MergeStatus.PENDING.value,
                    branch,
                    redact(summary),
                    _iso(utcnow()),
                ),
            )
            self._event(db, "mr.created", "merge_request", mr_id, {"taskId": task_id})
        return self.get_merge_request(mr_id)

    def get_merge_request(self, mr_id: str) -> MergeRequest:
        with self._read() as db:
            row = self._require(db, "merge_requests", mr_id)
        return self._mr_from_row(row)

    def list_merge_requests(self, status: MergeStatus | None = None) -> list[MergeRequest]:
        with self._read() as db:
            if status is None:
                rows = db.execute("SELECT * FROM merge_requests ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM merge_requests WHERE status = ? ORDER BY seq", (status.value,)
                ).fetchall()
        return [self._mr_from_row(row) for row in rows]

    def update_merge_request(
        self,
        mr_id: str,
        *,
        expect: Sequence[MergeStatus] | None = None,
        checks: Sequence[CheckRun] | None = None,
        **fields: Any,
    ) -> MergeRequest:
        allowed = {
            "status",
            "candidate_commit",
            "merged_commit",
            "summary",
            "reason",
            "merged_at",
            "approved_at",
        }
        if not set(fields) <= allowed:
            raise InvalidInputError(
                f"cannot update merge request fields {sorted(set(fields) - allowed)}"
            )
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, MergeStatus):
                value = value.value
            elif isinstance(value, datetime):
                value = _iso(value)
            elif isinstance(value, str) and key in {"summary", "reason"}:
                value = redact(value)
            values[key] = value
        if checks is not None:
            values["checks"] = redact(json.dumps([c.wire() for c in checks]))
        with self._write() as db:
            row = self._require(db, "merge_requests", mr_id, "status")
            if expect is not None and MergeStatus(row["status"]) not in expect:
                wanted = ", ".join(s.value for s in expect)
                raise InvalidTransitionError(
                    f"merge request {mr_id} is {row['status']}; this needs it to be {wanted}"
                )
            if values:
                assignments = ", ".join(f"{column} = ?" for column in values)
                db.execute(
                    f"UPDATE merge_requests SET {assignments} WHERE id = ?",
                    (*values.values(), mr_id),
                )
            event_data = {k: v for k, v in values.items() if k != "checks"}
            self._event(
                db, "mr.updated", "merge_request", mr_id, {"from": row["status"], **event_data}
            )
        return self.get_merge_request(mr_id)

    # -- events --------------------------------------------------------------------------------

    def events_since(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [
            Event(
                id=row["id"],
                at=_time(row["at"]),
                actor=row["actor"],
                kind=row["kind"],
                entity=row["entity"],
                entity_id=row["entity_id"],
                data=json.loads(row["data"]),
            )
            for row in rows
        ]

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap "did anything change?" probe."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def last_event(self, kind: str) -> Event | None:
        """The newest event of one kind (e.g. the latest forecast)."""
        with self._read() as db:
            row = db.execute(
                "SELECT id FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)
            ).fetchone()
        if row is None:
            return None
        return self.events_since(row["id"] - 1, limit=1)[0]

    def last_event_id(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def record_event(
        self,
        kind: str,
        entity: str,
        entity_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append an event that no table change carries (a forecast result, a note)."""
        with self._write() as db:
            self._event(db, kind, entity, entity_id, data)

    # -- the orchestrator lease ----------------------------------------------------------------

    def acquire_lease(self, name: str, token: str, ttl_s: float) -> None:
        """Take the named lease, or raise :class:`LeaseHeldError` naming the live holder.

        A holder is dead when its heartbeat is older than ``ttl_s`` or, on this host, its pid is
        gone; a dead holder's lease is taken over.
        """
        host = socket.gethostname()
        now = utcnow()
        with self._write() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["token"] != token:
                fresh = _time(row["heartbeat_at"]) > now - timedelta(seconds=ttl_s)
                alive = row["holder_host"] != host or _pid_alive(row["holder_pid"])
                if fresh and alive:
                    raise LeaseHeldError(
                        f"another orchestrator (pid {row['holder_pid']} on {row['holder_host']}) "
                        f"is already running for this repository; stop it first"
                    )
                self._event(
                    db, "lease.taken_over", "lease", name, {"previousPid": row["holder_pid"]}
                )
            db.execute(
                "INSERT INTO leases (name, holder_pid, holder_host, token, acquired_at, "
                "heartbeat_at) VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "holder_pid = excluded.holder_pid, holder_host = excluded.holder_host, "
                "token = excluded.token, acquired_at = excluded.acquired_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (name, os.getpid(), host, token, _iso(now), _iso(now)),
            )
            self._event(db, "lease.acquired", "lease", name, {"pid": os.getpid()})

    def heartbeat_lease(self, name: str, token: str) -> bool:
        """Refresh the lease; False when someone else has taken it."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE leases SET heartbeat_at = ? WHERE name = ? AND token = ?",
                (_iso(utcnow()), name, token),
            )
            return cursor.rowcount == 1

    def release_lease(self, name: str, token: str) -> None:
        with self._write() as db:
            cursor = db.execute("DELETE FROM leases WHERE name = ? AND token = ?", (name, token))
            if cursor.rowcount:
                self._event(db, "lease.released", "lease", name, {"pid": os.getpid()})

    def lease_holder(self, name: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return {
            "pid": row["holder_pid"],
            "host": row["holder_host"],
            "acquiredAt": row["acquired_at"],
            "heartbeatAt": row["heartbeat_at"],
        }

    # -- summaries -----------------------------------------------------------------------------

    def counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Tasks by status, merge requests by status, running sessions."""
        with self._read() as db:
            tasks = dict(
                db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
            )
            mrs = dict(
                db.execute("SELECT status, COUNT(*) FROM merge_requests GROUP BY status").fetchall()
            )
            running = db.execute(
                "SELECT COUNT(*) FROM sessions WHERE status = ?", (SessionStatus.RUNNING.value,)
            ).fetchone()[0]
        return tasks, mrs, running
