"""Which recorded events wake the steward and the dispatcher: only those that can change their
queues.

The store watcher hands the orchestrator every event another connection (or this one) commits.
Most of them are of no concern to the merge queue: a worker's token counts move many times a
minute (`session.updated`), and the steward's own notes (`forecast.updated`, `steward.paused`,
`check.flaky`) come back through the watcher too. A steward round reads the whole board and
forecasts every pair of active branches, so it runs only for what can change the queue or the
forecast: a merge request opened or changed, a task's status (a landing, a cancel, a new
attempt that supersedes a merge request), its priority or branch, a new dependency, a plan made
active. A landing by another process (`sf mr approve`) records `task.merged` and `mr.updated`;
a target moved outside stoneforge is no event at all, and is found when the steward lands.

The dispatcher's ready set depends on the tasks' statuses, their dependencies, priorities and
plans, and on the plan and day budgets: it runs a round for a task created, changed or moved (a
landing unblocks its dependents, a cancel or a review's send-back frees or requeues one), a new
dependency, a plan made active, a session that reached a budget. Its own runs ending, the
steward's landings and the provider's health wake it directly, not through the store.
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


#: Event kinds after which the dispatcher runs a round.
DISPATCHER_WAKE_KINDS: frozenset[str] = frozenset(
    {
        "task.created",
        "task.updated",  # with a priority only (see `wakes_dispatcher`): dispatch order
        "dep.added",  # the task may be blocked now
        "plan.activated",  # its tasks may dispatch
        "session.budget_reached",  # a plan or day budget may hold dispatch now
        # Landed (dependents unblocked), cancelled, retried...; not dispatched: starting one task
        # readies no other, and its run's end wakes the dispatcher directly.
        *(kind for kind in TASK_EVENT_KINDS.values() if kind != "task.dispatched"),
        # Transitions recorded under a kind of their own (`transition_task(kind=...)`).
        "task.changes_requested",
        "task.rejected",
        "task.recovered",
    }
)


def wakes_dispatcher(events: Iterable[Event]) -> bool:
    """Whether any of ``events`` can change what the dispatcher dispatches; a task's title,
    note, branch or checkout changed cannot (only its priority orders dispatch)."""
    return any(
        event.kind in DISPATCHER_WAKE_KINDS
        and (event.kind != "task.updated" or "priority" in event.data)
        for event in events
    )


def wakes_steward(events: Iterable[Event]) -> bool:
    """Whether any of ``events`` can change the steward's queue or forecast."""
    return any(event.kind in STEWARD_WAKE_KINDS for event in events)
