"""Merge request rows: the steward's queue and what happened to each request."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from stoneforge.errors import InvalidInputError
from stoneforge.models import CheckRun, MergeRequest, MergeStatus, Review, utcnow
from stoneforge.redact import redact
from stoneforge.store.reviews import ReviewRows
from stoneforge.store.schema import _iso, _time


def _mr_from_row(row: sqlite3.Row, reviews: list[Review] | None = None) -> MergeRequest:
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
        attempt=row["attempt"],
        head_commit=row["head_commit"],
        reviews=reviews or [],
        stacked_on=json.loads(row["stacked_on"] or "[]"),
        base_commit=row["base_commit"],
    )


class MergeRequestRows(ReviewRows):
    def create_merge_request(
        self,
        task_id: str,
        branch: str,
        summary: str,
        *,
        attempt: int | None = None,
        head_commit: str | None = None,
        review: bool = False,
        stacked_on: Sequence[str] = (),
        base_commit: str | None = None,
    ) -> MergeRequest:
        """A new merge request: `pending`, or `reviewing` when the steward reviews it first.

        ``stacked_on``/``base_commit``: a stacked branch's blockers and where its own work
        starts (its diff is against that, not the target)."""
        status = MergeStatus.REVIEWING if review else MergeStatus.PENDING
        with self._write() as db:
            seq, mr_id = self._next_id(db, "merge_requests", "mr")
            db.execute(
                "INSERT INTO merge_requests (seq, id, task_id, status, branch, summary, created_at,"
                " attempt, head_commit, stacked_on, base_commit) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    mr_id,
                    task_id,
                    status.value,
                    branch,
                    redact(summary),
                    _iso(utcnow()),
                    attempt,
                    head_commit,
                    json.dumps(list(stacked_on)) if stacked_on else None,
                    base_commit if stacked_on else None,
                ),
            )
            self._event(
                db, "mr.created", "merge_request", mr_id, {"taskId": task_id, "status": status}
            )
        return self.get_merge_request(mr_id)

    def get_merge_request(self, mr_id: str) -> MergeRequest:
        with self._read() as db:
            row = self._require(db, "merge_requests", mr_id)
            reviews = self._reviews_by_mr(db, mr_id=mr_id)
        return _mr_from_row(row, reviews.get(mr_id))

    def list_merge_requests(self, status: MergeStatus | None = None) -> list[MergeRequest]:
        with self._read() as db:
            if status is None:
                rows = db.execute("SELECT * FROM merge_requests ORDER BY seq").fetchall()
            else:
                rows = db.execute(
                    "SELECT * FROM merge_requests WHERE status = ? ORDER BY seq", (status.value,)
                ).fetchall()
            reviews = self._reviews_by_mr(db, status.value if status else None)
        return [_mr_from_row(row, reviews.get(row["id"])) for row in rows]

    def update_merge_request(
        self, mr_id: str, *, checks: Sequence[CheckRun] | None = None, **fields: Any
    ) -> MergeRequest:
        """Change merge request columns other than its status (see `transition_merge_request`)."""
        with self._write() as db:
            row = self._require(db, "merge_requests", mr_id, "status")
            self._set_mr_columns(db, mr_id, fields, checks, {"from": row["status"]})
        return self.get_merge_request(mr_id)

    def _set_mr_columns(
        self,
        db: sqlite3.Connection,
        mr_id: str,
        fields: dict[str, Any],
        checks: Sequence[CheckRun] | None,
        data: dict[str, Any],
        status: MergeStatus | None = None,
    ) -> None:
        allowed = {
            "candidate_commit",
            "merged_commit",
            "summary",
            "reason",
            "merged_at",
            "approved_at",
        }
        if not set(fields) <= allowed:
            raise InvalidInputError(
                f"cannot update merge request fields {sorted(set(fields) - allowed)} directly"
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
        if status is not None:
            values["status"] = status.value
        if checks is not None:
            values["checks"] = redact(json.dumps([c.wire() for c in checks]))
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            db.execute(
                f"UPDATE merge_requests SET {assignments} WHERE id = ?", (*values.values(), mr_id)
            )
        event_data = {k: v for k, v in values.items() if k != "checks"}
        self._event(db, "mr.updated", "merge_request", mr_id, {**data, **event_data})
