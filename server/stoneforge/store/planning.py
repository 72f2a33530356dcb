"""Tasks of a plan created in one go, and why a set of them cannot make a plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stoneforge.graph import DependencyGraph, Node
from stoneforge.models import TaskStatus


@dataclass(frozen=True)
class PlannedTask:
    """One task of a plan created in one go; ``depends_on`` names other tasks by ``key``."""

    key: str
    title: str
    description: str = ""
    priority: int = 3
    depends_on: tuple[str, ...] = ()


def planned_task_problems(tasks: Sequence[PlannedTask]) -> list[str]:
    """Why these tasks cannot make a plan (empty when they can): empty titles, priorities
    outside 1-5, and everything :func:`dependency_problems` finds."""
    problems: list[str] = []
    for index, task in enumerate(tasks, 1):
        name = f"task {task.key!r}" if task.key else f"task #{index}"
        if not task.title.strip():
            problems.append(f"{name}: the title is empty")
        if not 1 <= task.priority <= 5:
            problems.append(f"{name}: priority must be 1 (most urgent) to 5, got {task.priority}")
    return problems + dependency_problems(tasks)


def dependency_problems(tasks: Sequence[PlannedTask]) -> list[str]:
    """Empty or duplicate keys, dependencies on unknown keys or on the task itself, cycles."""
    problems: list[str] = []
    keys = {task.key for task in tasks}
    seen: set[str] = set()
    for index, task in enumerate(tasks, 1):
        name = f"task {task.key!r}"
        if not task.key.strip():
            problems.append(f"task #{index} has an empty key")
        elif task.key in seen:
            problems.append(f"{name}: the key is used by more than one task")
        seen.add(task.key)
        for dep in task.depends_on:
            if dep == task.key:
                problems.append(f"{name} depends on itself")
            elif dep not in keys:
                problems.append(f"{name} depends on unknown key {dep!r}")
    return problems + dependency_cycles(tasks)


def dependency_cycles(tasks: Sequence[PlannedTask]) -> list[str]:
    """Each dependency cycle among ``tasks`` once, as ``a -> b -> a`` (a depends on b...)."""
    keys = {task.key for task in tasks}
    nodes = [Node(id=key, priority=3, status=TaskStatus.OPEN, created_at="") for key in keys]
    edges = {
        (task.key, dep)
        for task in tasks
        for dep in task.depends_on
        if dep in keys and dep != task.key
    }
    graph = DependencyGraph(nodes, sorted(edges))
    found: list[str] = []
    covered: set[frozenset[str]] = set()
    for task in tasks:
        for dep in task.depends_on:
            if (task.key, dep) not in edges:
                continue
            back = graph.path(dep, task.key)
            if back is None:
                continue
            members = frozenset(back)
            if members in covered:
                continue
            covered.add(members)
            found.append("dependency cycle: " + " -> ".join([task.key, *back]))
    return found
