"""SQLite persistence and the append-only event log. The only package that speaks SQL.

Several processes share one store (a `sf serve` in a terminal, the CLI, the language server), so:
WAL journal, a busy timeout shorter than the orchestrator lease's time to live, and every write in
a ``BEGIN IMMEDIATE`` transaction that also appends its event, so no write is lost and every
change is visible in the log.

One module per job: :mod:`.schema` (tables, migrations, the connection and its transactions),
:mod:`.plans`, :mod:`.tasks` with :mod:`.task_graph`, :mod:`.board` (the lean rows) and
:mod:`.task_json` (the task list as JSON text), :mod:`.sessions` (and handoffs),
:mod:`.merge_requests` (with :mod:`.reviews`), :mod:`.costs` (spending roll-ups), :mod:`.transitions` (every status change, checked against
:mod:`stoneforge.lifecycle`), :mod:`.events`, :mod:`.lease` and :mod:`.summary`, each a mixin over
:class:`~.schema.StoreBase` that :class:`Store` composes; :mod:`.planning` checks the tasks of a
plan created in one go before anything is written.
"""

from __future__ import annotations

from stoneforge.store.board import BoardRows
from stoneforge.store.costs import CostDimension
from stoneforge.store.events import EventLog
from stoneforge.store.lease import Fence, Lease
from stoneforge.store.merge_requests import MergeRequestRows
from stoneforge.store.planning import (
    PlannedTask,
    dependency_cycles,
    dependency_problems,
    planned_task_problems,
)
from stoneforge.store.plans import DIRECTOR_SESSION_EVENT, DirectorSessionRef, PlanRows
from stoneforge.store.schema import BUSY_TIMEOUT_MS, SCHEMA_VERSION, StoreBase, default_actor
from stoneforge.store.sessions import SessionRows
from stoneforge.store.summary import Summary
from stoneforge.store.task_json import TaskJson
from stoneforge.store.tasks import QUESTION_EVENT, REFUSAL_EVENT
from stoneforge.store.transitions import Transitions

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CostDimension",
    "DIRECTOR_SESSION_EVENT",
    "QUESTION_EVENT",
    "REFUSAL_EVENT",
    "SCHEMA_VERSION",
    "DirectorSessionRef",
    "Fence",
    "PlannedTask",
    "Store",
    "default_actor",
    "dependency_cycles",
    "dependency_problems",
    "planned_task_problems",
]


class Store(
    BoardRows,
    Transitions,
    PlanRows,
    TaskJson,
    SessionRows,
    MergeRequestRows,
    EventLog,
    Lease,
    Summary,
    StoreBase,
):
    """One connection to `.stoneforge/state.db`; safe to share between threads.

    (The cost roll-ups, :class:`~.costs.CostRows`, come in through `PlanRows` and `TaskRows`.)
    """

    def sibling(self) -> Store:
        """Another connection to this store, with its actor and busy timeout: for reads in a
        worker thread, which then neither wait for nor hold this connection's lock."""
        return Store(self.path, actor=self.actor, busy_timeout_ms=round(self.busy_timeout_s * 1000))
