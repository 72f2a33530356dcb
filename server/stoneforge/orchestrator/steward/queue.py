"""The queue: which pending merge requests may land now, and in which order.

Landing order: blockers before their dependents (a dependent's merge request waits while a
blocker that can still land has not), then effective priority, then age. A stacked dependent
also waits while its branch holds blocker work that is not what lands (`stacking`).
"""

from __future__ import annotations

from stoneforge.graph import DependencyGraph
from stoneforge.models import MergeRequest, MergeStatus, Task, TaskStatus
from stoneforge.orchestrator.steward.base import Entry, StewardBase

#: A blocker in one of these states may still land, so its dependents' merge requests wait.
_ALIVE = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)


class QueueMixin(StewardBase):
    """Which pending merge requests may land now, in landing order."""

    async def queue(self) -> list[Entry]:
        """Pending merge requests that may land now: blockers first, then priority, then age.

        A merge request whose task is no longer in review is dropped (cancelled or failed: the
        MR is rejected; still in progress: the worker is finishing, so it waits). One whose
        branch is gone is rejected and its task sent back. A dependent waits while one of its
        blockers can still land and is not ahead of it in this queue.
        """
        for mr in self.store.list_merge_requests(MergeStatus.AWAITING_APPROVAL):
            stale = self._stale(mr, self.store.get_task(mr.task_id))
            if stale:  # nobody should be asked to approve what can no longer land
                self._reject(mr, stale)
        pending = self.store.list_merge_requests(MergeStatus.PENDING)
        if not pending:
            return []
        branches = self._branch_names()
        entries: list[Entry] = []
        for mr in pending:
            task = self.store.get_task(mr.task_id)
            stale = self._stale(mr, task)
            if stale:
                self._reject(mr, stale)
                continue
            if task.status != TaskStatus.REVIEW:
                continue
            if mr.branch not in branches:
                self._branch_gone(Entry(mr, task))
                continue
            entries.append(Entry(mr, task))
        if not entries:
            return []
        graph = await self._graph()  # the whole board: off the loop
        effective = graph.effective_priorities()
        ids = {e.task.id for e in entries}

        def depth(task_id: str, seen: frozenset[str] = frozenset()) -> int:
            deps = [d for d in graph.depends_on.get(task_id, ()) if d in ids and d not in seen]
            return 1 + max((depth(d, seen | {task_id}) for d in deps), default=0)

        entries.sort(key=lambda e: (depth(e.task.id), effective.get(e.task.id, 3), e.mr.created_at))
        ready: list[Entry] = []
        ahead: set[str] = set()
        for entry in entries:
            stale = self._stale_stack(entry)
            if stale:  # stacked on blocker work that is not (any more) what lands
                key = f"stale {entry.mr.id} {','.join(stale)}"
                if key not in self._said:
                    self._said.add(key)
                    self.note(
                        f"{entry.mr.id} ({entry.task.id}) waits to be restacked on its "
                        f"blocker(s) {', '.join(stale)}"
                    )
                continue
            waiting = self._blockers_waiting(entry.task.id, ahead, graph)
            if waiting:
                key = f"held {entry.mr.id} {','.join(waiting)}"
                if key not in self._said:
                    self._said.add(key)
                    self.note(
                        f"{entry.mr.id} ({entry.task.id}) waits for its blocker(s) "
                        f"{', '.join(waiting)} to land first"
                    )
                continue
            ready.append(entry)
            ahead.add(entry.task.id)
        return ready

    @staticmethod
    def _stale(mr: MergeRequest, task: Task) -> str | None:
        """Why ``mr`` can never land any more (its task ended, or moved on to a newer attempt)."""
        if task.status in (TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.MERGED):
            return f"not merged: its task {task.id} is {task.status.value}"
        if mr.attempt is not None and mr.attempt != task.dispatches:
            return f"superseded: task {task.id} was dispatched again since"
        return None

    def _blockers_waiting(self, task_id: str, ahead: set[str], graph: DependencyGraph) -> list[str]:
        """Blockers of ``task_id`` that may still land and are neither merged nor in ``ahead``.

        A blocker may still land while it is in progress or in review, or open, dispatchable (no
        plan or an active one) and not itself stuck behind a failed or cancelled task: the
        dispatcher's rule for what is done, so a held MR never keeps `--until-idle` waiting.
        ``graph``: the board, read off the loop (:meth:`_graph`).
        """
        memo: dict[str, bool] = {}

        def may_land(dep: str, seen: frozenset[str] = frozenset()) -> bool:
            if dep not in memo:
                node = graph.nodes.get(dep)
                if node is None or node.status not in _ALIVE:
                    memo[dep] = False
                elif node.status != TaskStatus.OPEN:
                    memo[dep] = True
                else:
                    memo[dep] = node.plan_active and all(
                        graph.nodes[d].status == TaskStatus.MERGED or may_land(d, seen | {dep})
                        for d in graph.depends_on.get(dep, ())
                        if d in graph.nodes and d not in seen
                    )
            return memo[dep]

        return [d for d in graph.depends_on.get(task_id, ()) if d not in ahead and may_land(d)]
