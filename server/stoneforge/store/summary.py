"""Board-wide counts in one snapshot (status lines, `sf status`)."""

from __future__ import annotations

from stoneforge.models import SessionStatus
from stoneforge.store.schema import StoreBase


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
