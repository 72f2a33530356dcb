"""Review rows: the steward's verdicts on merge requests, with their anchored comments."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from stoneforge.models import Review, ReviewComment, ReviewVerdict, utcnow
from stoneforge.redact import redact
from stoneforge.store.schema import StoreBase, _iso, _time


def _review_from_row(row: sqlite3.Row) -> Review:
    return Review(
        id=row["id"],
        mr_id=row["mr_id"],
        task_id=row["task_id"],
        round=row["round"],
        verdict=ReviewVerdict(row["verdict"]),
        summary=row["summary"],
        comments=[ReviewComment.model_validate(c) for c in json.loads(row["comments"])],
        session_id=row["session_id"],
        head_commit=row["head_commit"],
        created_at=_time(row["created_at"]),
    )


class ReviewRows(StoreBase):
    def add_review(
        self,
        mr_id: str,
        verdict: ReviewVerdict,
        summary: str,
        comments: Sequence[ReviewComment] = (),
        *,
        session_id: str | None = None,
        head_commit: str | None = None,
    ) -> Review:
        """Record a review of ``mr_id``; its round is one more than the task's reviews so far."""
        with self._write() as db:
            mr = self._require(db, "merge_requests", mr_id, "task_id")
            task_id = mr["task_id"]
            done = db.execute(
                "SELECT COUNT(*) FROM reviews WHERE task_id = ?", (task_id,)
            ).fetchone()[0]
            seq, review_id = self._next_id(db, "reviews", "rv")
            db.execute(
                "INSERT INTO reviews (seq, id, mr_id, task_id, round, verdict, summary, comments,"
                " session_id, head_commit, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    review_id,
                    mr_id,
                    task_id,
                    done + 1,
                    verdict.value,
                    redact(summary),
                    redact(json.dumps([c.wire() for c in comments])),
                    session_id,
                    head_commit,
                    _iso(utcnow()),
                ),
            )
            self._event(
                db,
                "mr.reviewed",
                "merge_request",
                mr_id,
                {
                    "review": review_id,
                    "round": done + 1,
                    "verdict": verdict.value,
                    "comments": len(comments),
                },
            )
            row = db.execute("SELECT * FROM reviews WHERE id = ?", (review_id,)).fetchone()
        return _review_from_row(row)

    def list_reviews(self, *, mr_id: str | None = None, task_id: str | None = None) -> list[Review]:
        """Reviews of one merge request or of every merge request of a task, oldest first."""
        where, args = [], []
        if mr_id is not None:
            where.append("mr_id = ?")
            args.append(mr_id)
        if task_id is not None:
            where.append("task_id = ?")
            args.append(task_id)
        sql = "SELECT * FROM reviews" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY seq", args).fetchall()
        return [_review_from_row(row) for row in rows]

    @staticmethod
    def _reviews_by_mr(
        db: sqlite3.Connection, status: str | None = None, mr_id: str | None = None
    ) -> dict[str, list[Review]]:
        """Reviews grouped by merge request: of one MR, of MRs in ``status``, or of all."""
        sql, args = "SELECT r.* FROM reviews r", []
        if mr_id is not None:
            sql += " WHERE r.mr_id = ?"
            args.append(mr_id)
        elif status is not None:
            sql += " JOIN merge_requests m ON m.id = r.mr_id WHERE m.status = ?"
            args.append(status)
        found: dict[str, list[Review]] = {}
        for row in db.execute(sql + " ORDER BY r.seq", args).fetchall():
            found.setdefault(row["mr_id"], []).append(_review_from_row(row))
        return found
