"""Early detection: forecast conflicts among the active branches before they reach the queue."""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.git.forecast import forecast
from stoneforge.orchestrator.steward.base import StewardBase
from stoneforge.store import Store

log = logging.getLogger("stoneforge.steward")


class ForecastMixin(StewardBase):
    """Conflicts among the active branches, recorded when they change."""

    def _own_connection(self) -> Store:
        """The steward's own connection, for reads in a worker thread: they neither wait for nor
        hold the lock of the connection the loop shares (with the editor's handler threads)."""
        if self._reader is None:
            self._reader = Store(
                self.store.path,
                actor=self.store.actor,
                busy_timeout_ms=round(self.store.busy_timeout_s * 1000),
            )
        return self._reader

    async def _forecast(self) -> None:
        """Forecast conflicts among the active branches; record them when they change."""
        branches = await to_thread.run_sync(lambda: self._own_connection().active_branches())
        if not branches:
            return
        try:
            result = await to_thread.run_sync(
                lambda: forecast(self.root, self.landing_target.ref, branches)
            )
        except Exception:
            log.exception("forecast failed")
            return
        conflicts = [
            {"ours": p.ours, "theirs": p.theirs, "paths": p.paths} for p in result.conflicts
        ]
        previous = self.store.last_event("forecast.updated")
        if previous is not None and previous.data.get("conflicts") == conflicts:
            return
        self.store.record_event("forecast.updated", "forecast", None, {"conflicts": conflicts})
        for pair in conflicts:
            self.note(
                f"forecast: {pair['ours']} and {pair['theirs']} will conflict in {', '.join(pair['paths'])}"
            )
