"""The task dependency graph: cycle checks, the blocked flag, effective priority, the ready set.

Pure functions over plain values, so they are cheap to test exhaustively and to run on 10,000
tasks: the store loads one compact row per task and one pair per edge, and everything here is
O(tasks + edges).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from stoneforge.models import FINISHED_TASK_STATUSES, TaskStatus

#: What a blocker must be for its dependents to start: landed, or (stacking) in review too.
#: Statuses of a dependency that no longer block: landed, or (with stacking) in review too.
LANDED = frozenset({TaskStatus.MERGED})
STACKABLE = frozenset({TaskStatus.MERGED, TaskStatus.REVIEW})


@dataclass(frozen=True, slots=True)
class Node:
    """What the graph needs to know of a task."""

    id: str
    priority: int
    status: TaskStatus
    #: Creation time (a datetime, or the store's fixed-width ISO text: both sort by time).
    created_at: datetime | str
    #: Creation order, to break ties between tasks created in the same millisecond.
    seq: int = 0
    #: Whether the task may dispatch at all: it has no plan or its plan is active.
    plan_active: bool = True


class DependencyGraph:
    """Tasks and their ``depends_on`` edges (blocked task -> blocker)."""

    def __init__(self, nodes: Iterable[Node], edges: Iterable[tuple[str, str]]) -> None:
        self.nodes: dict[str, Node] = {node.id: node for node in nodes}
        self.depends_on: dict[str, list[str]] = {task_id: [] for task_id in self.nodes}
        self.dependents: dict[str, list[str]] = {task_id: [] for task_id in self.nodes}
        for blocked, blocker in edges:
            self.depends_on.setdefault(blocked, []).append(blocker)
            self.dependents.setdefault(blocker, []).append(blocked)
        self._effective: dict[str, int] | None = None

    # -- single-task facts ---------------------------------------------------------------------

    def is_blocked(self, task_id: str, *, stacking: bool = False) -> bool:
        """An open task is blocked while any of its dependencies is not merged.

        With ``stacking`` (`orchestrator.stacking`), a dependency in review (its work complete,
        its merge request queued) does not block either: the task may start on a branch stacked
        on the blocker's. Its merge request still lands only after the blocker's.
        """
        node = self.nodes[task_id]
        if node.status != TaskStatus.OPEN:
            return False
        passing = STACKABLE if stacking else LANDED
        return any(
            self.nodes[dep].status not in passing
            for dep in self.depends_on.get(task_id, ())
            if dep in self.nodes
        )

    def blockers(self, task_id: str) -> list[str]:
        """The unmerged dependencies that keep ``task_id`` waiting."""
        return [
            dep
            for dep in self.depends_on.get(task_id, ())
            if dep in self.nodes and self.nodes[dep].status != TaskStatus.MERGED
        ]

    def effective_priority(self, task_id: str) -> int:
        return self.effective_priorities()[task_id]

    # -- whole-graph facts ---------------------------------------------------------------------

    def effective_priorities(self) -> dict[str, int]:
        """Most urgent (lowest) priority among each task and every task that waits on it.

        Finished tasks (merged, cancelled) wait on nothing, so they pass no urgency down.
        Computed once per graph (see :func:`effective_priorities`).
        """
        if self._effective is None:
            self._effective = effective_priorities(
                {task_id: node.priority for task_id, node in self.nodes.items()},
                {
                    task_id
                    for task_id, node in self.nodes.items()
                    if node.status not in FINISHED_TASK_STATUSES
                },
                self.depends_on,
            )
        return self._effective

    def ready(self, *, stacking: bool = False) -> list[str]:
        """Open, unblocked tasks of active plans (or of none): most urgent first, then oldest.

        ``stacking``: a blocker in review does not block (see :meth:`is_blocked`)."""
        effective = self.effective_priorities()
        candidates = [
            node
            for node in self.nodes.values()
            if node.status == TaskStatus.OPEN
            and node.plan_active
            and not self.is_blocked(node.id, stacking=stacking)
        ]
        candidates.sort(key=lambda node: (effective[node.id], node.created_at, node.seq))
        return [node.id for node in candidates]

    def path(self, start: str, goal: str) -> list[str] | None:
        """A dependency path start -> ... -> goal following ``depends_on`` edges, if one exists."""
        parents: dict[str, str | None] = {start: None}
        frontier = [start]
        while frontier:
            current = frontier.pop()
            if current == goal:
                chain = [current]
                while (parent := parents[chain[-1]]) is not None:
                    chain.append(parent)
                return list(reversed(chain))
            for dep in self.depends_on.get(current, ()):
                if dep not in parents:
                    parents[dep] = current
                    frontier.append(dep)
        return None


def effective_priorities(
    priority: Mapping[str, int],
    unfinished: Container[str],
    depends_on: Mapping[str, Iterable[str]],
) -> dict[str, int]:
    """Each task's most urgent priority among itself and every unfinished task that waits on it,
    through unfinished tasks only (a finished task waits on nothing: it passes no urgency down).

    ``priority`` names every task; ``depends_on`` maps a task to its blockers (unknown ids are
    ignored). O(tasks + edges): urgency spreads from the most urgent level down, so each task
    takes the first (most urgent) level that reaches it and passes it on once.
    """
    effective = dict(priority)
    levels: dict[int, list[str]] = {}
    for task_id, level in priority.items():
        if task_id in unfinished:
            levels.setdefault(level, []).append(task_id)
    # A task reached from a level is final: a later level is less urgent. Blockers are pushed
    # whole and checked when popped (a C-level extend per task, not a Python step per edge).
    reached: set[str] = set()
    blockers_of = depends_on.get
    for level in sorted(levels):
        stack = levels[level]
        while stack:
            task_id = stack.pop()
            if task_id in reached:
                continue
            reached.add(task_id)
            current = effective.get(task_id)
            if current is None:
                continue  # not a task of this board
            if current > level:
                effective[task_id] = level
            if task_id in unfinished:
                blockers = blockers_of(task_id)
                if blockers:
                    stack.extend(blockers)
    return effective


def check_new_dependency(
    graph: DependencyGraph, blocked: str, blocker: str, titles: Mapping[str, str] | None = None
) -> str | None:
    """Why ``blocked`` may not depend on ``blocker``, or None when the edge is fine."""
    titles = titles or {}

    def name(task_id: str) -> str:
        title = titles.get(task_id)
        return f"{task_id} ({title!r})" if title else task_id

    if blocked not in graph.nodes:
        return f"unknown task id {blocked!r}"
    if blocker not in graph.nodes:
        return f"unknown dependency id {blocker!r} (for task {name(blocked)})"
    if blocked == blocker:
        return f"task {name(blocked)} cannot depend on itself"
    cycle = graph.path(blocker, blocked)
    if cycle is not None:
        loop = " -> ".join(name(task_id) for task_id in [blocked, *cycle])
        return f"adding {blocked} -> {blocker} would make a dependency cycle: {loop}"
    return None
