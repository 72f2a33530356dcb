"""Which recorded events wake the steward: only those that can change its queue.

The store watcher hands the orchestrator every event another connection (or this one) commits.
Most of them are of no concern to the merge queue: a worker's token counts move many times a
minute (`session.updated`), and the steward's own notes (`forecast.updated`, `steward.paused`,
`check.flaky`) come back through the watcher too. A steward round reads the whole board and
forecasts every pair of active branches, so it runs only for what can change the queue or the
forecast: a merge request opened or changed, a task's status (a landing, a cancel, a new
attempt that supersedes a merge request), its priority or branch, a new dependency, a plan made
active. A landing by another process (`sf mr approve`) records `task.merged` and `mr.updated`;
a target moved outside stoneforge is no event at all, and is found when the steward lands.
"""

from __future__ import annotations

from collections.abc import Iterable

from stoneforge.lifecycle import TASK_EVENT_KINDS
from stoneforge.models import Event

#: Event kinds after which the steward runs a round.
STEWARD_WAKE_KINDS: frozenset[str] = frozenset(
    {
        "mr.created",
        "mr.updated",
        "task.updated",  # priority (landing order) or branch (the forecast)
        "dep.added",  # landing order: blockers first
        "plan.activated",  # a blocker in it may now land, so its dependents' MRs wait
        *TASK_EVENT_KINDS.values(),  # landed, cancelled, failed, dispatched again, requeued...
    }
)


def wakes_steward(events: Iterable[Event]) -> bool:
    """Whether any of ``events`` can change the steward's queue or forecast."""
    return any(event.kind in STEWARD_WAKE_KINDS for event in events)
