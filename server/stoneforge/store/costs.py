"""What agent sessions spent, rolled up in SQL: per task, plan, role and UTC day.

Every sum is a ``GROUP BY`` over the sessions table (each session's row holds its tokens and
cost, kept current while it runs), so a roll-up never loads the sessions themselves. A
director's planning session belongs to no task: the plan it planned is found through the
`director.session` event that names it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Literal

from stoneforge.models import CostRow, CostTotals
from stoneforge.store.schema import StoreBase

CostDimension = Literal["task", "plan", "role", "day"]

_SUMS = (
    "COUNT(*) AS sessions, COALESCE(SUM(s.input_tokens), 0) AS input_tokens, "
    "COALESCE(SUM(s.output_tokens), 0) AS output_tokens, "
    "COALESCE(SUM(s.cost_usd), 0.0) AS cost_usd"
)
#: Only the plan of a session needs the joins (its task's plan, or the plan its director planned).
_SESSIONS = "sessions s"
_SESSIONS_WITH_PLAN = (
    "sessions s LEFT JOIN tasks t ON t.id = s.task_id "
    "LEFT JOIN (SELECT json_extract(data, '$.sessionId') AS session_id, MAX(entity_id) AS plan_id "
    "FROM events WHERE kind = 'director.session' AND entity_id IS NOT NULL GROUP BY 1) d "
    "ON d.session_id = s.id"
)
_KEYS: dict[CostDimension, str] = {
    "task": "s.task_id",
    "plan": "COALESCE(t.plan_id, d.plan_id)",
    "role": "s.role",
    "day": "substr(s.started_at, 1, 10)",
}


def _totals(row: sqlite3.Row | None) -> CostTotals:
    if row is None:
        return CostTotals()
    return CostTotals(
        sessions=row["sessions"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        tokens=row["input_tokens"] + row["output_tokens"],
        cost_usd=row["cost_usd"],
    )


def day_bounds(day: date) -> tuple[str, str]:
    """The start-time range (stored text, UTC) of the sessions started on ``day``."""
    return day.isoformat(), (day + timedelta(days=1)).isoformat()


class CostRows(StoreBase):
    def _cost_groups(
        self,
        db: sqlite3.Connection,
        by: CostDimension,
        where: str = "",
        params: Sequence[Any] = (),
    ) -> dict[str | None, CostTotals]:
        key = _KEYS[by]
        source = _SESSIONS_WITH_PLAN if by == "plan" else _SESSIONS
        rows = db.execute(
            f"SELECT {key} AS key, {_SUMS} FROM {source} {where} GROUP BY 1 ORDER BY 1",
            params,
        ).fetchall()
        return {row["key"]: _totals(row) for row in rows}

    def cost_totals(
        self,
        *,
        task_id: str | None = None,
        plan_id: str | None = None,
        day: date | None = None,
    ) -> CostTotals:
        """The sum over the sessions of a task, a plan, a UTC day (all given must hold)."""
        clauses: list[str] = []
        params: list[Any] = []
        if task_id is not None:
            clauses.append("s.task_id = ?")
            params.append(task_id)
        if plan_id is not None:
            clauses.append(f"{_KEYS['plan']} = ?")
            params.append(plan_id)
        if day is not None:
            clauses.append("s.started_at >= ? AND s.started_at < ?")
            params.extend(day_bounds(day))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        source = _SESSIONS_WITH_PLAN if plan_id is not None else _SESSIONS
        with self._read() as db:
            row = db.execute(f"SELECT {_SUMS} FROM {source} {where}", params).fetchone()
        return _totals(row)

    def cost_by(self, by: CostDimension) -> list[CostRow]:
        """One row per task / plan / role / day (with the task's or plan's title)."""
        with self._read() as db:
            groups = self._cost_groups(db, by)
            titles: dict[str, str] = {}
            if by in ("task", "plan"):
                table = "tasks" if by == "task" else "plans"
                titles = dict(db.execute(f"SELECT id, title FROM {table}").fetchall())
        return [
            CostRow(key=key, title=titles.get(key or ""), **totals.model_dump())
            for key, totals in groups.items()
        ]

    def _task_costs(
        self, db: sqlite3.Connection, task_ids: Sequence[str] | None
    ) -> dict[str | None, CostTotals]:
        """Per task, for assembling tasks (all tasks when ``task_ids`` is None)."""
        if task_ids is None:
            return self._cost_groups(db, "task")
        marks = ",".join("?" * len(task_ids))
        return self._cost_groups(db, "task", f"WHERE s.task_id IN ({marks})", tuple(task_ids))

    def _plan_costs(self, db: sqlite3.Connection) -> dict[str | None, CostTotals]:
        return self._cost_groups(db, "plan")
