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
        """Forecast conflicts among the active branches; record them when they change.

        The event carries the conflicting pairs with their files and line ranges (no commits,
        so a branch that moves without changing the conflict records nothing): the language
        server turns them into diagnostics without forecasting again."""
        branches = await to_thread.run_sync(lambda: self._own_connection().active_branches())
        previous = self.store.last_event("forecast.updated")
        if not branches:
            if previous is not None and previous.data.get("conflicts"):
                # The last conflicting branch landed or ended: nothing is predicted any more.
                self.store.record_event(
                    "forecast.updated",
                    "forecast",
                    None,
                    {"conflicts": [], "target": self.landing_target.ref, "pairs": []},
                )
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
        data = {
            "conflicts": conflicts,
            "target": result.target,
            "pairs": [
                p.model_dump(mode="json", by_alias=True, exclude={"ours_commit", "theirs_commit"})
                for p in result.conflicts
            ],
        }
        if previous is not None and previous.data == data:
            return
        self.store.record_event("forecast.updated", "forecast", None, data)
        old = previous.data.get("conflicts") if previous is not None else None
        if old == conflicts:
            return  # only lines moved: the pairs were noted already
        for pair in conflicts:
            self.note(
                f"forecast: {pair['ours']} and {pair['theirs']} will conflict in {', '.join(pair['paths'])}"
            )
