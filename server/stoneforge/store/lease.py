"""The named lease that keeps one orchestrator per repository, and its fencing epoch.

Each acquisition gets an epoch one higher than any before it (kept in ``lease_epochs``, so it
grows across releases too). A :class:`Fence` is that proof of holding the lease: a fenced write
checks, inside its own transaction, that the lease still carries its epoch, so a process that
lost the lease (a suspended laptop whose heartbeat went stale, a stalled loop) cannot dispatch,
complete, land or mark merged once another has taken over.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from stoneforge.errors import LeaseHeldError, LeaseLostError
from stoneforge.models import utcnow
from stoneforge.store.schema import StoreBase, _iso, _time


@dataclass(frozen=True)
class Fence:
    """Proof of holding lease ``name`` at ``epoch``."""

    name: str
    epoch: int


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_running_here(pid: int) -> bool:
    """A live process with this pid that could be an orchestrator (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True  # no /proc: trust liveness
    return any(word in cmdline for word in ("python", "stoneforge", "sf"))


def _row_alive(row: sqlite3.Row, ttl_s: float) -> bool:
    """On this host a holder lives while its process does, whatever its heartbeat says; on
    another host while its heartbeat is younger than ``ttl_s``."""
    if row["holder_host"] == socket.gethostname():
        return _holder_running_here(row["holder_pid"])
    return _time(row["heartbeat_at"]) > utcnow() - timedelta(seconds=ttl_s)


class Lease(StoreBase):
    def acquire_lease(self, name: str, token: str, ttl_s: float) -> Fence:
        """Take the named lease, or raise :class:`LeaseHeldError` naming the live holder.

        On this host a holder is alive while its process is, whatever its heartbeat says (a
        stalled loop or a suspended machine must not end up with two orchestrators); a holder on
        another host is alive while its heartbeat is younger than ``ttl_s``. A dead holder's
        lease is taken over, and its fence stops working at that moment.
        """
        host = socket.gethostname()
        now = utcnow()
        with self._write() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["token"] != token:
                if _row_alive(row, ttl_s):
                    raise LeaseHeldError(
                        f"another orchestrator (pid {row['holder_pid']} on {row['holder_host']}) "
                        f"is already running for this repository; stop it first"
                    )
                self._event(
                    db, "lease.taken_over", "lease", name, {"previousPid": row["holder_pid"]}
                )
            epoch = self._next_epoch(db, name)
            db.execute(
                "INSERT INTO leases (name, holder_pid, holder_host, token, acquired_at, "
                "heartbeat_at, epoch) VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "holder_pid = excluded.holder_pid, holder_host = excluded.holder_host, "
                "token = excluded.token, acquired_at = excluded.acquired_at, "
                "heartbeat_at = excluded.heartbeat_at, epoch = excluded.epoch",
                (name, os.getpid(), host, token, _iso(now), _iso(now), epoch),
            )
            self._event(db, "lease.acquired", "lease", name, {"pid": os.getpid(), "epoch": epoch})
        return Fence(name, epoch)

    @staticmethod
    def _next_epoch(db: sqlite3.Connection, name: str) -> int:
        row = db.execute("SELECT epoch FROM lease_epochs WHERE name = ?", (name,)).fetchone()
        epoch = (row["epoch"] if row else 0) + 1
        db.execute(
            "INSERT INTO lease_epochs (name, epoch) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET epoch = excluded.epoch",
            (name, epoch),
        )
        return epoch

    def heartbeat_lease(self, name: str, token: str) -> bool:
        """Refresh the lease; False when someone else has taken it."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE leases SET heartbeat_at = ? WHERE name = ? AND token = ?",
                (_iso(utcnow()), name, token),
            )
            return cursor.rowcount == 1

    def release_lease(self, name: str, token: str) -> None:
        with self._write() as db:
            cursor = db.execute("DELETE FROM leases WHERE name = ? AND token = ?", (name, token))
            if cursor.rowcount:
                self._event(db, "lease.released", "lease", name, {"pid": os.getpid()})

    def verify_fence(self, fence: Fence | None) -> None:
        """Raise :class:`LeaseLostError` unless ``fence`` still holds (None: nothing to prove)."""
        if fence is not None:
            with self._read() as db:
                self._check_fence(db, fence)

    @staticmethod
    def _check_fence(db: sqlite3.Connection, fence: Fence | None) -> None:
        if fence is None:
            return
        row = db.execute("SELECT epoch FROM leases WHERE name = ?", (fence.name,)).fetchone()
        if row is None or row["epoch"] != fence.epoch:
            raise LeaseLostError(
                f"this process no longer holds the {fence.name} lease (epoch {fence.epoch}); "
                "another orchestrator took over, so it must not act any more"
            )

    def lease_holder(
        self, name: str, *, live_within_s: float | None = None
    ) -> dict[str, Any] | None:
        """Who holds the lease; with ``live_within_s``, None when that holder is dead (killed
        without releasing it), by the rule :meth:`acquire_lease` uses to take it over."""
        with self._read() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None or (live_within_s is not None and not _row_alive(row, live_within_s)):
            return None
        return {
            "pid": row["holder_pid"],
            "host": row["holder_host"],
            "acquiredAt": row["acquired_at"],
            "heartbeatAt": row["heartbeat_at"],
            "epoch": row["epoch"],
        }
