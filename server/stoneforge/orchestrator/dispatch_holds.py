"""The plan and day budgets that hold the dispatcher back, as it last read them (issue 15).

A change is noted and logged (the `budget.holds` event), so `sf status`, the live view and the
editor say why nothing is dispatched; while a day budget holds, the dispatcher looks again when
the UTC day ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stoneforge.models import BudgetHold
from stoneforge.orchestrator.budgets import held_task, seconds_to_next_day
from stoneforge.store import Store


class DispatchHolds:
    def __init__(self, store: Store, note: Callable[[str], None]) -> None:
        self.store = store
        self.note = note
        self.holds: list[BudgetHold] = []
        #: Monotonic time of the next UTC day while a day budget holds, else None.
        self.day_starts_at: float | None = None

    def update(self, holds: list[BudgetHold]) -> list[BudgetHold]:
        """Take the holds a dispatch round read; note and record them when they changed."""
        day_held = any(hold.scope == "day" for hold in holds)
        self.day_starts_at = time.monotonic() + seconds_to_next_day() if day_held else None
        if [h.reason for h in holds] != [h.reason for h in self.holds]:
            self.holds = holds
            self.store.record_event(
                "budget.holds", "orchestrator", None, {"holds": [h.wire() for h in holds]}
            )
            for hold in holds:
                self.note(f"dispatch held: {hold.reason}")
            if not holds:
                self.note("dispatch resumed: no plan or day budget holds it back")
        return holds

    def holds_back(self, task_id: str, plans: dict[str, str | None]) -> bool:
        """Whether a hold stops ``task_id`` (``plans``: each open task's plan)."""
        return held_task(self.holds, plans.get(task_id)) is not None
