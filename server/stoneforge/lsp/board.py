"""The lean board, kept current in memory: `taskTree` answers from it, `stoneforge/changed`
carries its deltas.

Reading 10,000 lean rows takes ~100 ms; bringing them up to date after a few events takes a
millisecond or two (:meth:`Store.lean_changes`: the events since the board's version and the rows
of the tasks they touched, in one snapshot). Every `taskTree` first catches up with the store, so
it never answers older than the store at the time of the request, whether or not the change
watcher has delivered the latest events yet.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from stoneforge.service import Service

#: More events than this since the board's version: read the whole board again.
CATCH_UP_LIMIT = 5000


class RawJson(str):
    """JSON text already encoded: sent as it is, inside the response (see lsp/server.py)."""


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class LeanBoard:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self.version: int | None = None
        self._plans: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, dict[str, Any]] = {}
        # Each row encoded once, when it changes: a 10,000-task tree is then a string join.
        self._encoded: dict[str, str] = {}

    def tree_json(self) -> RawJson:
        """:meth:`tree`, as JSON text (compact): what `taskTree` sends."""
        with self._lock:
            self._catch_up()
            by_plan: dict[str | None, list[str]] = {}
            for task_id, task in self._tasks.items():
                by_plan.setdefault(task.get("planId"), []).append(self._encoded[task_id])
            plans = ",".join(
                _encode(plan)[:-1] + ',"tasks":[' + ",".join(by_plan.get(plan_id, [])) + "]}"
                for plan_id, plan in self._plans.items()
            )
            threshold = self.service.config.orchestrator.handoffAtTokens
            return RawJson(
                f'{{"version":{self.version},"plans":[{plans}],'
                f'"unplanned":[{",".join(by_plan.get(None, []))}],"handoffAtTokens":{threshold}}}'
            )

    def tree(self) -> dict[str, Any]:
        """The `taskTree` result: plans with their lean rows, the tasks of no plan, the version."""
        with self._lock:
            self._catch_up()
            by_plan: dict[str | None, list[dict[str, Any]]] = {}
            for task in self._tasks.values():
                by_plan.setdefault(task.get("planId"), []).append(task)
            return {
                "version": self.version,
                "plans": [
                    {**plan, "tasks": by_plan.get(plan_id, [])}
                    for plan_id, plan in self._plans.items()
                ],
                "unplanned": by_plan.get(None, []),
                "handoffAtTokens": self.service.config.orchestrator.handoffAtTokens,
            }

    def advance(self) -> dict[str, Any]:
        """Catch up with the store; the delta for `stoneforge/changed`: ``previousVersion``,
        ``version`` and the changed ``tasks`` and ``plans``. ``previousVersion`` is null when
        the board was read whole (too many events, or the first read): a client then asks for
        the tree."""
        with self._lock:
            previous = self.version
            tasks, plans = self._catch_up()
            if tasks is None:
                previous = None
            return {
                "previousVersion": previous,
                "version": self.version,
                "tasks": tasks or [],
                "plans": plans or [],
            }

    def _catch_up(self) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        """The rows that changed, or (None, None) when the whole board was read again."""
        store = self.service.store
        changes = None if self.version is None else store.lean_changes(self.version, CATCH_UP_LIMIT)
        if changes is None:
            version, plans, tasks = store.lean_board()
            self.version = version
            self._plans = {plan["id"]: plan for plan in plans}
            self._tasks = {task["id"]: task for task in tasks}
            self._encoded = {task["id"]: _encode(task) for task in tasks}
            return None, None
        self.version = changes.version
        for plan in changes.plans:
            self._plans[plan["id"]] = plan
        for task in changes.tasks:
            self._tasks[task["id"]] = task  # a new task goes last: the newest, as the store orders
            self._encoded[task["id"]] = _encode(task)
        return changes.tasks, changes.plans
