"""Plan rows, a plan created with its tasks, and the director conversation of each plan."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stoneforge.errors import InvalidInputError
from stoneforge.models import CostTotals, Plan, PlanStatus, TaskStatus, utcnow
from stoneforge.store.costs import CostRows
from stoneforge.store.planning import PlannedTask, planned_task_problems
from stoneforge.store.schema import _TASK_COLUMNS, _iso, _time
from stoneforge.store.task_graph import TaskGraph

#: Event kinds whose rows carry state read back by the store (not just history).
DIRECTOR_SESSION_EVENT = "director.session"


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


class PlanRows(TaskGraph, CostRows):
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
                    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                        0,
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
            self._refresh_graph_facts(db, ids.values())
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

    def _plan_from_row(
        self, row: sqlite3.Row, task_ids: list[str], cost: CostTotals | None = None
    ) -> Plan:
        return Plan(
            id=row["id"],
            title=row["title"],
            goal=row["goal"],
            status=PlanStatus(row["status"]),
            created_at=_time(row["created_at"]),
            task_ids=task_ids,
            cost=cost or CostTotals(),
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
        return self._plan_from_row(row, task_ids, self.cost_totals(plan_id=plan_id))

    def list_plans(self) -> list[Plan]:
        with self._read() as db:
            rows = db.execute("SELECT * FROM plans ORDER BY seq").fetchall()
            members: dict[str, list[str]] = {}
            for task_id, plan_id in db.execute(
                "SELECT id, plan_id FROM tasks WHERE plan_id IS NOT NULL ORDER BY seq"
            ):
                members.setdefault(plan_id, []).append(task_id)
            costs = self._plan_costs(db)
        return [
            self._plan_from_row(row, members.get(row["id"], []), costs.get(row["id"]))
            for row in rows
        ]

    def activate_plan(self, plan_id: str) -> Plan:
        with self._write() as db:
            row = self._require(db, "plans", plan_id, "status")
            if row["status"] != PlanStatus.ACTIVE.value:
                db.execute(
                    "UPDATE plans SET status = ? WHERE id = ?", (PlanStatus.ACTIVE.value, plan_id)
                )
                self._event(db, "plan.activated", "plan", plan_id)
        return self.get_plan(plan_id)
