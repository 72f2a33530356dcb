"""Agent sessions and the handoffs they leave for the next session of a task."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from typing import Any

from stoneforge.errors import InvalidInputError, NotFoundError
from stoneforge.models import AgentSession, Handoff, SessionRole, SessionStatus, utcnow
from stoneforge.redact import redact
from stoneforge.store.schema import StoreBase, _iso, _time


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


class SessionRows(StoreBase):
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
        return _session_from_row(row)

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
        return [_session_from_row(row) for row in rows]

    def orphaned_sessions(self) -> list[tuple[AgentSession, int | None]]:
        """Sessions still marked running, with the pid of the orchestrator that started them."""
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM sessions WHERE status = ? ORDER BY seq",
                (SessionStatus.RUNNING.value,),
            ).fetchall()
        return [(_session_from_row(row), row["owner_pid"]) for row in rows]

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
        return _handoff_from_row(row)

    def list_handoffs(self, task_id: str | None = None) -> list[Handoff]:
        with self._read() as db:
            if task_id is None:
                rows = db.execute("SELECT * FROM handoffs ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM handoffs WHERE task_id = ? ORDER BY seq", (task_id,)
                ).fetchall()
        return [_handoff_from_row(row) for row in rows]
