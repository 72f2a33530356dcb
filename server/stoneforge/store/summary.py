"""Board-wide counts in one snapshot (status lines, `sf status`)."""

from __future__ import annotations

import json

from stoneforge.models import OpenQuestion, SessionStatus
from stoneforge.store.schema import StoreBase, _time
from stoneforge.store.tasks import QUESTION_EVENT


class Summary(StoreBase):
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

    def open_questions(self) -> list[OpenQuestion]:
        """Questions the director could not answer (the worker assumed), on unfinished tasks."""
        with self._read() as db:
            rows = db.execute(
                "SELECT e.entity_id, e.data, t.title, e.at FROM events e JOIN tasks t "
                "ON t.id = e.entity_id WHERE e.kind = ? AND t.status NOT IN "
                "('merged', 'cancelled') AND json_extract(e.data, '$.error') IS NOT NULL "
                "ORDER BY e.id",
                (QUESTION_EVENT,),
            ).fetchall()
        found = []
        for task_id, data, title, at in rows:
            event = json.loads(data)
            found.append(
                OpenQuestion(
                    task_id=task_id,
                    task_title=title,
                    question=event.get("question", ""),
                    error=event["error"],
                    asked_at=_time(event.get("askedAt") or at),
                )
            )
        return found
