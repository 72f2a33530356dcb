"""The schema, its migrations and the connection plumbing every part of the store shares."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from stoneforge.errors import InvalidInputError, NotFoundError, StoreBusyError
from stoneforge.models import utcnow
from stoneforge.redact import redact

SCHEMA_VERSION = 6
#: How long a write (or read) waits for the store's lock, in this process or in SQLite, before it
#: fails with StoreBusyError. Shorter than the orchestrator lease's time to live less one
#: heartbeat interval (20 s and 5 s): a heartbeat stalled this long still lands in time, and a
#: writer stalled longer fails while its lease holds rather than writing after it expired.
BUSY_TIMEOUT_MS = 10_000

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

# Version 2: attempts are named (a task's `dispatches` never goes back, each MR records the
# attempt that made it and the branch tip it was made for), and the lease carries a fencing
# epoch that grows with every acquisition (kept in lease_epochs across releases).
_SCHEMA_V2 = """
ALTER TABLE tasks ADD COLUMN dispatches INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET dispatches = attempts;
ALTER TABLE merge_requests ADD COLUMN attempt INTEGER;
ALTER TABLE merge_requests ADD COLUMN head_commit TEXT;
ALTER TABLE leases ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
CREATE TABLE lease_epochs (
    name TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);
"""

# Version 3 (budgets, issue 15): a task's own budget (`sf task retry --budget`), and sessions
# found by their start time (the day's spending).
_SCHEMA_V3 = """
ALTER TABLE tasks ADD COLUMN budget_usd REAL;
ALTER TABLE tasks ADD COLUMN budget_tokens INTEGER;
CREATE INDEX sessions_started ON sessions(started_at);
"""

# Version 4: the steward's reviews of merge requests (`agents.steward.review`), one row per
# review with its verdict and its comments (JSON: path, line, body).
_SCHEMA_V4 = """
CREATE TABLE reviews (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    mr_id TEXT NOT NULL REFERENCES merge_requests(id),
    task_id TEXT NOT NULL REFERENCES tasks(id),
    round INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    comments TEXT NOT NULL DEFAULT '[]',
    session_id TEXT,
    head_commit TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX reviews_mr ON reviews(mr_id);
CREATE INDEX reviews_task ON reviews(task_id);
"""

# Version 5 (stacked branches, issue 18): the blockers a task's branch is stacked on (JSON:
# blocker id -> the blocker's head it was built on) and the commit its own work starts from;
# each merge request records the same, so its diff is its own changes, not its blockers'.
_SCHEMA_V5 = """
ALTER TABLE tasks ADD COLUMN stacked_on TEXT;
ALTER TABLE tasks ADD COLUMN stack_base TEXT;
ALTER TABLE merge_requests ADD COLUMN stacked_on TEXT;
ALTER TABLE merge_requests ADD COLUMN base_commit TEXT;
"""

# Version 6 (`sf task list` of a large board, issue 17): each task's facts of the dependency graph,
# kept in its row by every write that changes them (`TaskGraph._refresh_graph_facts`, in the
# write's transaction), so a list reads them instead of the whole graph: its effective priority,
# whether it is blocked (1/0) and its dependencies (a JSON list, in the order they were added).
# NULL: not known (a row written other than through the store); the migration fills them.
_SCHEMA_V6 = """
ALTER TABLE tasks ADD COLUMN effective_priority INTEGER;
ALTER TABLE tasks ADD COLUMN blocked INTEGER;
ALTER TABLE tasks ADD COLUMN depends_on_list TEXT;
"""

#: Schema migrations, index i brings the database from version i to i + 1.
_MIGRATIONS: list[str] = [
    _SCHEMA_V1,
    _SCHEMA_V2,
    _SCHEMA_V3,
    _SCHEMA_V4,
    _SCHEMA_V5,
    _SCHEMA_V6,
]

#: How error messages name the rows of each table.
_NOUNS = {
    "plans": "plan",
    "tasks": "task",
    "sessions": "session",
    "merge_requests": "merge request",
    "reviews": "review",
}

_TASK_COLUMNS = (
    "seq, id, title, description, plan_id, priority, status, branch, worktree, attempts, note, "
    "created_at, updated_at, dispatches"
)


def _iso(moment: datetime | None) -> str | None:
    # Fixed width, so text order is time order.
    return None if moment is None else moment.isoformat(timespec="milliseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def default_actor() -> str:
    return f"pid:{os.getpid()}"


class StoreBase:
    """One connection to `.stoneforge/state.db`; safe to share between threads."""

    def __init__(
        self, path: Path, actor: str | None = None, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS
    ) -> None:
        self.path = path
        self.actor = actor or default_actor()
        self.busy_timeout_s = busy_timeout_ms / 1000
        self._lock = threading.RLock()
        self._depth = 0  # nesting of write transactions (only the thread holding _lock reads it)
        self._conn = sqlite3.connect(
            str(path), timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    # -- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        """This connection's lock, or :class:`StoreBusyError` after the busy timeout (another
        thread of this process holds it: a long read, a stalled write)."""
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise StoreBusyError(
                f"{self.path}: a {what} waited {self.busy_timeout_s:g} s for another thread of "
                f"this process (pid {os.getpid()}) to finish with the store; nothing was written"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _begin_immediate(self) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise StoreBusyError(
                f"{self.path}: another process held the database's write lock for more than "
                f"{self.busy_timeout_s:g} s (busy timeout); nothing was written"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the database write lock up front (no upgrade races).

        Nested inside another (see :meth:`transaction`), it joins the outer one: everything
        commits or rolls back together. Waiting for a lock longer than the busy timeout raises
        :class:`StoreBusyError`.
        """
        with self._locked("write"):
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._begin_immediate()
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot across several SELECTs (inside a write: that write's view)."""
        with self._locked("read"):
            if self._depth:
                yield self._conn
                return
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._lock:
            if self._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return  # up to date: opening a connection takes no write lock
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
                self._migrated(db, version)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrated(self, db: sqlite3.Connection, version: int) -> None:
        """What a migration from ``version`` computes beyond its SQL (in its transaction)."""

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
