"""Task rows and dependencies, assembled into tasks with their sessions, handoffs and questions."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from stoneforge.errors import InvalidInputError, NotFoundError
from stoneforge.graph import check_new_dependency
from stoneforge.models import (
    AgentSession,
    CostTotals,
    Handoff,
    MergeRequest,
    Review,
    Task,
    TaskQuestion,
    TaskStatus,
    ToolRefusal,
    WireModel,
    utcnow,
)
from stoneforge.store.costs import CostRows
from stoneforge.store.merge_requests import _mr_from_row
from stoneforge.store.reviews import _review_from_row
from stoneforge.store.schema import _TASK_COLUMNS, _iso, _time
from stoneforge.store.sessions import _handoff_from_row, _session_from_row
from stoneforge.store.task_graph import TaskGraph

#: Event kinds whose rows carry state read back by the store (not just history).
QUESTION_EVENT = "task.question"
REFUSAL_EVENT = "task.tool_refused"


def _task_filter(plan_id: str | None, status: TaskStatus | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if plan_id is not None:
        clauses.append("plan_id = ?")
        params.append(plan_id)
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


_DATETIME = TypeAdapter(datetime)


#: The store's own form of a time (`_iso`).
_STORED_TIME = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]"
    "+00:00"
)


def _sql_wire_time(column: str) -> str:
    """SQL for a stored time as the wire writes it (see :func:`_wire_time`), NULL when it is
    not in the store's own form."""
    return (
        f"CASE WHEN {column} GLOB '{_STORED_TIME}' "
        f"THEN replace(substr({column}, 1, 23) || '000Z', '.000000Z', 'Z') END"
    )


#: A task's columns in the order `_wires` reads them: its times as the wire writes them, and as
#: stored (for :func:`_wire_time` where SQLite gave none).
_WIRE_COLUMNS = (
    "id, title, description, plan_id, priority, status, branch, worktree, attempts, "
    f"dispatches, {_sql_wire_time('created_at')}, {_sql_wire_time('updated_at')}, note, "
    "budget_usd, budget_tokens, created_at AS created, updated_at AS updated, stacked_on, "
    "stack_base"
)


def _wire_time(text: str | None) -> str | None:
    """A stored time as `Task.wire()` writes it: the store's own form
    (`2026-01-02T03:04:05.678+00:00`) rewritten as text, anything else through pydantic."""
    if text is None:
        return None
    if len(text) == 29 and text[19] == "." and text.endswith("+00:00"):
        millis = text[20:23]
        return text[:19] + ("Z" if millis == "000" else f".{millis}000Z")
    return _DATETIME.dump_python(datetime.fromisoformat(text), mode="json")


def _wire(value: WireModel | list[WireModel]) -> Any:
    return [item.wire() for item in value] if isinstance(value, list) else value.wire()


@dataclass
class _Related:
    """What tasks carry besides their rows, by task id."""

    effective: dict[str, int]
    depends_on: dict[str, list[str]]
    blocked: set[str]
    sessions: dict[str, list[AgentSession]] = field(default_factory=dict)
    handoffs: dict[str, list[Handoff]] = field(default_factory=dict)
    merge_requests: dict[str, MergeRequest] = field(default_factory=dict)
    questions: dict[str, list[TaskQuestion]] = field(default_factory=dict)
    refusals: dict[str, list[ToolRefusal]] = field(default_factory=dict)
    costs: dict[str | None, CostTotals] = field(default_factory=dict)


class TaskRows(TaskGraph, CostRows):
    def create_task(
        self,
        title: str,
        *,
        description: str = "",
        plan_id: str | None = None,
        priority: int = 3,
        depends_on: Sequence[str] = (),
        branch: str | None = None,
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
                f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    task_id,
                    title,
                    description,
                    plan_id,
                    priority,
                    TaskStatus.OPEN.value,
                    branch,
                    None,
                    0,
                    None,
                    now,
                    now,
                    0,
                ),
            )
            for dep in dict.fromkeys(depends_on):
                db.execute("INSERT INTO deps (task_id, depends_on) VALUES (?, ?)", (task_id, dep))
            self._refresh_graph_facts(db, [task_id])
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
            self._refresh_graph_facts(db, [blocked])
            self._event(db, "dep.added", "task", blocked, {"dependsOn": blocker})
        return self.get_task(blocked)

    def _task_rows(
        self, db: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()
    ) -> list[sqlite3.Row]:
        return db.execute(
            f"SELECT {_TASK_COLUMNS}, budget_usd, budget_tokens, stacked_on, stack_base FROM tasks "
            f"{where} ORDER BY seq",
            params,
        ).fetchall()

    def _related(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> _Related:
        """What a task carries besides its row, for ``rows``, in bulk (one query per kind)."""
        wanted = {row["id"] for row in rows}
        few = len(wanted) <= 50
        marks = ",".join("?" * len(wanted))
        effective, depends_on, blocked = (
            self._graph_facts_of_few(db, rows) if few else self._graph_facts_of_all(db)
        )
        related = _Related(effective, depends_on, blocked)
        scope = f"WHERE task_id IN ({marks})" if few else ""
        params = tuple(wanted) if few else ()
        for row in db.execute(f"SELECT * FROM sessions {scope} ORDER BY seq", params):
            related.sessions.setdefault(row["task_id"], []).append(_session_from_row(row))
        for row in db.execute(f"SELECT * FROM handoffs {scope} ORDER BY seq", params):
            related.handoffs.setdefault(row["task_id"], []).append(_handoff_from_row(row))
        reviews: dict[str, list[Review]] = {}
        for row in db.execute(f"SELECT * FROM reviews {scope} ORDER BY seq", params):
            reviews.setdefault(row["mr_id"], []).append(_review_from_row(row))
        for row in db.execute(f"SELECT * FROM merge_requests {scope} ORDER BY seq", params):
            # the latest wins
            related.merge_requests[row["task_id"]] = _mr_from_row(row, reviews.get(row["id"]))
        related.costs = self._task_costs(db, tuple(wanted) if few else None)
        event_scope = f"AND entity_id IN ({marks})" if few else ""
        for row in db.execute(
            f"SELECT entity_id, kind, at, data FROM events WHERE kind IN (?, ?) {event_scope} "
            "ORDER BY id",
            (QUESTION_EVENT, REFUSAL_EVENT, *params),
        ):
            data = json.loads(row["data"])
            if row["kind"] == REFUSAL_EVENT:
                related.refusals.setdefault(row["entity_id"], []).append(
                    ToolRefusal(
                        tool=data.get("tool", ""),
                        tried=data.get("tried", ""),
                        reason=data.get("reason", ""),
                        paths=data.get("paths") or [],
                        session_id=data.get("sessionId"),
                        at=_time(row["at"]),
                    )
                )
                continue
            related.questions.setdefault(row["entity_id"], []).append(
                TaskQuestion(
                    question=data.get("question", ""),
                    answer=data.get("answer", ""),
                    session_id=data.get("sessionId"),
                    error=data.get("error"),
                    asked_at=_time(data.get("askedAt")),
                    answered_at=_time(row["at"]),
                )
            )
        return related

    def _assemble(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[Task]:
        """Tasks with their computed fields, sessions, handoffs and merge request, in bulk."""
        if not rows:
            return []
        related = self._related(db, rows)
        return [
            Task(
                id=row["id"],
                title=row["title"],
                description=row["description"],
                plan_id=row["plan_id"],
                priority=row["priority"],
                effective_priority=related.effective.get(row["id"], row["priority"]),
                depends_on=related.depends_on.get(row["id"], []),
                status=TaskStatus(row["status"]),
                blocked=row["id"] in related.blocked,
                branch=row["branch"],
                worktree=row["worktree"],
                attempts=row["attempts"],
                dispatches=row["dispatches"],
                created_at=_time(row["created_at"]),
                updated_at=_time(row["updated_at"]),
                note=row["note"],
                sessions=related.sessions.get(row["id"], []),
                handoffs=related.handoffs.get(row["id"], []),
                merge_request=related.merge_requests.get(row["id"]),
                questions=related.questions.get(row["id"], []),
                cost=related.costs.get(row["id"]) or CostTotals(),
                budget_usd=row["budget_usd"],
                budget_tokens=row["budget_tokens"],
                refusals=related.refusals.get(row["id"], []),
                stack_heads=(heads := json.loads(row["stacked_on"] or "{}")),
                stacked_on=list(heads),
                stack_base=row["stack_base"],
            )
            for row in rows
        ]

    def _wires(self, db: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
        """``[task.wire() for task in self._assemble(db, rows)]``, built straight from the rows
        of :data:`_WIRE_COLUMNS`: no model per task, only for what a task carries (sessions, a
        merge request...), and its times already written as the wire writes them by SQLite."""
        if not rows:
            return []
        related = self._related(db, rows)
        zero_cost = CostTotals().wire()
        nested = (
            related.sessions,
            related.handoffs,
            related.merge_requests,
            related.questions,
            related.costs,
            related.refusals,
        )
        sessions, handoffs, merge_requests, questions, costs, refusals = (
            {key: _wire(value) for key, value in part.items()} for part in nested
        )
        effective, depends_on, blocked = related.effective, related.depends_on, related.blocked
        return [
            {
                "id": task_id,
                "title": title,
                "description": description,
                "planId": plan_id,
                "priority": priority,
                "effectivePriority": effective.get(task_id, priority),
                "dependsOn": list(depends_on.get(task_id, ())),
                "status": status,
                "blocked": task_id in blocked,
                "branch": branch,
                "worktree": worktree,
                "attempts": attempts,
                "dispatches": dispatches,
                "createdAt": created_at if created_at or not created else _wire_time(created),
                "updatedAt": updated_at if updated_at or not updated else _wire_time(updated),
                "note": note,
                "sessions": sessions.get(task_id, []),
                "handoffs": handoffs.get(task_id, []),
                "mergeRequest": merge_requests.get(task_id),
                "questions": questions.get(task_id, []),
                "cost": costs.get(task_id) or dict(zero_cost),
                "budgetUsd": budget_usd,
                "budgetTokens": budget_tokens,
                "refusals": refusals.get(task_id, []),
                "stackHeads": (heads := json.loads(stacked_on or "{}")),
                "stackBase": stack_base,
                "stackedOn": list(heads),
            }
            for (
                task_id,
                title,
                description,
                plan_id,
                priority,
                status,
                branch,
                worktree,
                attempts,
                dispatches,
                created_at,
                updated_at,
                note,
                budget_usd,
                budget_tokens,
                created,
                updated,
                stacked_on,
                stack_base,
            ) in rows
        ]

    def get_task(self, task_id: str) -> Task:
        with self._read() as db:
            rows = self._task_rows(db, "WHERE id = ?", (task_id,))
            if not rows:
                raise NotFoundError(f"no task with id {task_id!r}")
            return self._assemble(db, rows)[0]

    def list_tasks(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> list[Task]:
        where, params = _task_filter(plan_id, status)
        with self._read() as db:
            return self._assemble(db, self._task_rows(db, where, params))

    def list_task_wires(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> list[dict[str, Any]]:
        """What `list_tasks` returns as JSON-ready dicts (``Task.wire()``), an order of magnitude
        faster on a large board (`sf task list --json`, the editor's task tree)."""
        where, params = _task_filter(plan_id, status)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_WIRE_COLUMNS} FROM tasks {where} ORDER BY seq", params
            ).fetchall()
            return self._wires(db, rows)

    def active_branches(self) -> dict[str, str]:
        """Task id -> branch of every task in progress or in review that has a branch (what the
        conflict forecast compares), read through the status index, not the whole board."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, branch FROM tasks WHERE status IN (?, ?) AND branch IS NOT NULL "
                "ORDER BY seq",
                (TaskStatus.IN_PROGRESS.value, TaskStatus.REVIEW.value),
            ).fetchall()
        return {row["id"]: row["branch"] for row in rows}

    def open_task_plans(self) -> dict[str, str | None]:
        """Task id -> plan id of every open task (what a budget hold is checked against)."""
        with self._read() as db:
            rows = db.execute(
                "SELECT id, plan_id FROM tasks WHERE status = ?", (TaskStatus.OPEN.value,)
            ).fetchall()
        return {row["id"]: row["plan_id"] for row in rows}

    def ready_task_ids(self, *, stacking: bool = False) -> list[str]:
        """Open, unblocked tasks of active plans (or none), most urgent first, then oldest.

        With ``stacking``, a blocker in review unblocks as a merged one does (the task starts
        stacked on its branch; `orchestrator.stacking`)."""
        with self._read() as db:
            return self._ready(db, stacking=stacking)

    def stacked_tasks(self) -> list[Task]:
        """Tasks whose branch is stacked on unlanded blockers and whose work is not finished
        (open, in progress, in review): what a blocker's landing, change or failure restacks."""
        with self._read() as db:
            rows = self._task_rows(
                db,
                "WHERE stacked_on IS NOT NULL AND stacked_on != '{}' AND status IN (?, ?, ?)",
                (TaskStatus.OPEN.value, TaskStatus.IN_PROGRESS.value, TaskStatus.REVIEW.value),
            )
            return self._assemble(db, rows)

    def update_task(self, task_id: str, *, kind: str = "task.updated", **fields: Any) -> Task:
        """Change task columns other than its status (that moves only by `transition_task`)."""
        allowed = {"branch", "worktree", "note", "priority", "title"}
        if not set(fields) <= allowed:
            raise InvalidInputError(
                f"cannot update task fields {sorted(set(fields) - allowed)} directly"
                + ("; a status changes only by a transition" if "status" in fields else "")
            )
        with self._write() as db:
            row = self._require(db, "tasks", task_id, "status")
            self._set_task_columns(db, task_id, dict(fields), kind, {"from": row["status"]})
        return self.get_task(task_id)

    def _set_task_columns(
        self,
        db: sqlite3.Connection,
        task_id: str,
        values: dict[str, Any],
        kind: str,
        data: dict[str, Any],
    ) -> None:
        values["updated_at"] = _iso(utcnow())
        assignments = ", ".join(f"{column} = ?" for column in values)
        db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", (*values.values(), task_id))
        if "status" in values or "priority" in values:
            self._refresh_graph_facts(db, [task_id])
        self._event(db, kind, "task", task_id, {**data, **values})

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
