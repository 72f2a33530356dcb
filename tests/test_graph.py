"""The dependency graph: blocked, effective priority, ready order, and a property test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stoneforge.graph import DependencyGraph, Node, check_new_dependency
from stoneforge.lifecycle import task_path
from stoneforge.models import TaskStatus
from stoneforge.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def node(
    task_id: str,
    priority: int = 3,
    status: TaskStatus = TaskStatus.OPEN,
    age: int = 0,
    plan_active: bool = True,
) -> Node:
    return Node(task_id, priority, status, T0 + timedelta(seconds=age), age, plan_active)


def test_blocked_until_every_dependency_is_merged() -> None:
    graph = DependencyGraph(
        [node("a", status=TaskStatus.MERGED), node("b", status=TaskStatus.REVIEW), node("c")],
        [("c", "a"), ("c", "b")],
    )
    assert graph.is_blocked("c") and graph.blockers("c") == ["b"]
    graph = DependencyGraph(
        [node("a", status=TaskStatus.MERGED), node("b", status=TaskStatus.MERGED), node("c")],
        [("c", "a"), ("c", "b")],
    )
    assert not graph.is_blocked("c")


def test_effective_priority_is_inherited_transitively() -> None:
    # d (p1) waits on c, which waits on b, which waits on a; e (p2) waits on a too.
    graph = DependencyGraph(
        [node("a", 5), node("b", 4), node("c", 3), node("d", 1), node("e", 2), node("f", 4)],
        [("b", "a"), ("c", "b"), ("d", "c"), ("e", "a")],
    )
    effective = graph.effective_priorities()
    assert effective == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 2, "f": 4}


def test_finished_dependents_pass_no_urgency() -> None:
    graph = DependencyGraph([node("a", 5), node("b", 1, status=TaskStatus.CANCELLED)], [("b", "a")])
    assert graph.effective_priority("a") == 5


def test_ready_order_is_effective_priority_then_age() -> None:
    graph = DependencyGraph(
        [
            node("old-low", 4, age=0),
            node("new-low", 4, age=5),
            node("urgent", 1, age=9),
            node("inherits", 5, age=1),
            node("waiter", 2, age=2),
            node("draft", 1, age=0, plan_active=False),
            node("running", 1, status=TaskStatus.IN_PROGRESS),
        ],
        [("waiter", "inherits")],
    )
    assert graph.ready() == ["urgent", "inherits", "old-low", "new-low"]


def test_dependency_checks_name_the_problem() -> None:
    graph = DependencyGraph([node("a"), node("b"), node("c")], [("b", "a"), ("c", "b")])
    assert check_new_dependency(graph, "a", "a") == "task a cannot depend on itself"
    assert "unknown dependency id 'zz'" in (check_new_dependency(graph, "a", "zz") or "")
    message = check_new_dependency(graph, "a", "c", {"a": "A", "c": "C"}) or ""
    assert "cycle" in message and "a ('A') -> c ('C') -> b -> a ('A')" in message
    assert check_new_dependency(graph, "c", "a") is None


STATUSES = list(TaskStatus)


@st.composite
def random_graphs(draw: st.DrawFn) -> tuple[list[Node], list[tuple[str, str]]]:
    count = draw(st.integers(min_value=1, max_value=25))
    nodes = [
        node(
            f"t{i}",
            draw(st.integers(1, 5)),
            draw(st.sampled_from(STATUSES)),
            age=draw(st.integers(0, 9)),
            plan_active=draw(st.booleans()),
        )
        for i in range(count)
    ]
    # Edges only from later to earlier tasks: acyclic, as the store guarantees.
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)).filter(
                lambda e: e[0] > e[1]
            ),
            max_size=60,
            unique=True,
        )
    )
    return nodes, [(f"t{a}", f"t{b}") for a, b in edges]


@settings(max_examples=300, deadline=None)
@given(random_graphs())
def test_ready_never_yields_a_task_with_an_unmerged_dependency(
    graph_data: tuple[list[Node], list[tuple[str, str]]],
) -> None:
    nodes, edges = graph_data
    graph = DependencyGraph(nodes, edges)
    status = {n.id: n.status for n in nodes}
    ready = graph.ready()
    for task_id in ready:
        assert status[task_id] == TaskStatus.OPEN
        assert all(status[b] == TaskStatus.MERGED for a, b in edges if a == task_id)
    # Every open, dispatchable task with all dependencies merged is ready.
    for n in nodes:
        deps_merged = all(status[b] == TaskStatus.MERGED for a, b in edges if a == n.id)
        if n.status == TaskStatus.OPEN and n.plan_active and deps_merged:
            assert n.id in ready
    # Ready order never puts a less urgent task first.
    effective = graph.effective_priorities()
    keys = [effective[t] for t in ready]
    assert keys == sorted(keys)
    # Effective priority is never less urgent than the task's own, nor than a waiting dependent's.
    for n in nodes:
        assert effective[n.id] <= n.priority
    for a, b in edges:
        if status[a] not in (TaskStatus.MERGED, TaskStatus.CANCELLED):
            assert effective[b] <= effective[a]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=30))
def test_store_refuses_every_edge_that_closes_a_cycle(
    tmp_path_factory, pairs: list[tuple[int, int]]
) -> None:
    with Store(tmp_path_factory.mktemp("g") / "state.db") as store:
        ids = [store.create_task(f"task {i}").id for i in range(8)]
        accepted: list[tuple[str, str]] = []
        for a, b in pairs:
            try:
                store.add_dependency(ids[a], ids[b])
                accepted.append((ids[a], ids[b]))
            except Exception as exc:  # noqa: BLE001 - the refusal itself is what we check
                assert "cycle" in str(exc) or "itself" in str(exc)
        graph = store.graph()
        for task_id in ids:
            for dep in graph.depends_on[task_id]:
                assert graph.path(dep, task_id) is None  # no edge closes a loop


@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_one_task_read_agrees_with_the_whole_board(
    tmp_path_factory, graph_data: tuple[list[Node], list[tuple[str, str]]]
) -> None:
    """get_task computes blocked/effective priority without loading the board: same answers."""
    nodes, edges = graph_data
    with Store(tmp_path_factory.mktemp("few") / "state.db") as store:
        ids = {n.id: store.create_task(n.id, priority=n.priority).id for n in nodes}
        for a, b in edges:
            store.add_dependency(ids[a], ids[b])
        for n in nodes:
            for event in task_path(n.status):
                store.transition_task(ids[n.id], event)
        board = {t.id: t for t in store.list_tasks()}
        if len(board) <= 50:  # list_tasks of a small board takes the few-rows path too
            graph = store.graph()
            effective = graph.effective_priorities()
            for task_id, task in board.items():
                assert task.effective_priority == effective[task_id]
                assert task.blocked == graph.is_blocked(task_id)
        for stacking in (False, True):  # the compact read agrees, with stacking or without
            assert store.ready_task_ids(stacking=stacking) == store.graph().ready(stacking=stacking)
        for task_id, task in board.items():
            one = store.get_task(task_id)
            assert one.effective_priority == task.effective_priority
            assert one.blocked == task.blocked
            assert one.depends_on == task.depends_on


def reference_effective(graph: DependencyGraph) -> dict[str, int]:
    """The definition, computed naively: the task's own priority and, for every unfinished
    dependent, that dependent's effective priority."""

    def of(task_id: str) -> int:
        waiting = [
            of(child)
            for child in graph.dependents.get(task_id, [])
            if child in graph.nodes
            and graph.nodes[child].status not in (TaskStatus.MERGED, TaskStatus.CANCELLED)
        ]
        return min([graph.nodes[task_id].priority, *waiting])

    return {task_id: of(task_id) for task_id in graph.nodes}


@settings(max_examples=300, deadline=None)
@given(random_graphs())
def test_effective_priorities_agree_with_the_definition(
    graph_data: tuple[list[Node], list[tuple[str, str]]],
) -> None:
    nodes, edges = graph_data
    graph = DependencyGraph(nodes, [*edges, ("t0", "gone")])  # an edge to an unknown task
    assert graph.effective_priorities() == reference_effective(graph)
