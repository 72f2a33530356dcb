"""Early detection: forecast conflicts among the active branches before they reach the queue."""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.git.forecast import forecast
from stoneforge.orchestrator.steward.base import StewardBase

log = logging.getLogger("stoneforge.steward")


class ForecastMixin(StewardBase):
    """Conflicts among the active branches, recorded when they change."""

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
