"""The named lease that keeps one orchestrator per repository."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from stoneforge.errors import LeaseHeldError
from stoneforge.models import utcnow
from stoneforge.store.schema import StoreBase, _iso, _time


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease(StoreBase):
    def acquire_lease(self, name: str, token: str, ttl_s: float) -> None:
        """Take the named lease, or raise :class:`LeaseHeldError` naming the live holder.

        A holder is dead when its heartbeat is older than ``ttl_s`` or, on this host, its pid is
        gone; a dead holder's lease is taken over.
        """
        host = socket.gethostname()
        now = utcnow()
        with self._write() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["token"] != token:
                fresh = _time(row["heartbeat_at"]) > now - timedelta(seconds=ttl_s)
                alive = row["holder_host"] != host or _pid_alive(row["holder_pid"])
                if fresh and alive:
                    raise LeaseHeldError(
                        f"another orchestrator (pid {row['holder_pid']} on {row['holder_host']}) "
                        f"is already running for this repository; stop it first"
                    )
                self._event(
                    db, "lease.taken_over", "lease", name, {"previousPid": row["holder_pid"]}
                )
            db.execute(
                "INSERT INTO leases (name, holder_pid, holder_host, token, acquired_at, "
                "heartbeat_at) VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                "holder_pid = excluded.holder_pid, holder_host = excluded.holder_host, "
                "token = excluded.token, acquired_at = excluded.acquired_at, "
                "heartbeat_at = excluded.heartbeat_at",
                (name, os.getpid(), host, token, _iso(now), _iso(now)),
            )
            self._event(db, "lease.acquired", "lease", name, {"pid": os.getpid()})

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

    def lease_holder(self, name: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = db.execute("SELECT * FROM leases WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return {
            "pid": row["holder_pid"],
            "host": row["holder_host"],
            "acquiredAt": row["acquired_at"],
            "heartbeatAt": row["heartbeat_at"],
        }
