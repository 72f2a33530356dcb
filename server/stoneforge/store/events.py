"""Reading the append-only event log, and events that no table change carries."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from stoneforge.models import Event
from stoneforge.store.schema import StoreBase, _time


def event_of(row: sqlite3.Row) -> Event:
    """An `events` row as the model."""
    return Event(
        id=row["id"],
        at=_time(row["at"]),
        actor=row["actor"],
        kind=row["kind"],
        entity=row["entity"],
        entity_id=row["entity_id"],
        data=json.loads(row["data"]),
    )


class EventLog(StoreBase):
    def events_since(self, last_id: int = 0, limit: int = 1000) -> list[Event]:
        with self._read() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [event_of(row) for row in rows]

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
