"""When `--until-idle` stops: nothing left that can still run."""

from __future__ import annotations

from collections.abc import Callable

from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.store import Store

#: A blocker in one of these never lands: a task behind it cannot run.
_DEAD_ENDS = (TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BUDGET_EXCEEDED)


def board_is_idle(store: Store, held_by_budget: Callable[[str], bool]) -> bool:
    """Nothing open that can still run, nothing in progress, nothing in review.

    An open task blocked (transitively) by a failed, cancelled or budget_exceeded task counts
    as done, as does one in a draft plan, one a plan or day budget holds back
    (``held_by_budget``), and a merge request waiting for a human's approval. Reads the whole
    board: call it off the event loop.
    """
    graph = store.graph()
    waiting_for_human = {
        mr.task_id for mr in store.list_merge_requests(MergeStatus.AWAITING_APPROVAL)
    }
    dead_ends: dict[str, bool] = {}

    def stuck(task_id: str, seen: frozenset[str] = frozenset()) -> bool:
        if task_id in dead_ends:
            return dead_ends[task_id]
        node = graph.nodes.get(task_id)
        result = node is None or node.status in _DEAD_ENDS
        if not result and node is not None and node.status != TaskStatus.MERGED:
            result = any(
                stuck(dep, seen | {task_id})
                for dep in graph.depends_on.get(task_id, ())
                if dep not in seen
            )
        dead_ends[task_id] = result
        return result

    for task_id, node in graph.nodes.items():
        if node.status == TaskStatus.OPEN and held_by_budget(task_id):
            continue  # waits for a person to raise the budget (or for the next day)
        if node.status == TaskStatus.IN_PROGRESS:
            return False
        if node.status == TaskStatus.REVIEW and task_id not in waiting_for_human:
            return False
        if node.status == TaskStatus.OPEN and node.plan_active and not stuck(task_id):
            return False
    return True
