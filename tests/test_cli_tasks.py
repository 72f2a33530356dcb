"""Plans, tasks and dependencies through the CLI, as a user types them."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SfRunner

TASK_KEYS = {
    "id",
    "title",
    "description",
    "planId",
    "priority",
    "effectivePriority",
    "dependsOn",
    "status",
    "blocked",
    "branch",
    "worktree",
    "attempts",
    "createdAt",
    "sessions",
    "handoffs",
    "mergeRequest",
}


def test_create_prints_the_id_alone(initialised: Path, sf: SfRunner) -> None:
    plan_id = sf("plan", "create", "--title", "Sprint 14").stdout.strip()
    task_id = sf("task", "create", "--title", "Add login", "--plan", plan_id).stdout.strip()
    assert plan_id == "p1" and task_id == "t1"


def test_task_json_shape_and_fields(initialised: Path, sf: SfRunner) -> None:
    plan_id = sf("plan", "create", "--title", "Sprint").stdout.strip()
    first = sf("task", "create", "--title", "Schema", "--priority", "4").stdout.strip()
    task = sf(
        "task",
        "create",
        "--title",
        "API",
        "--plan",
        plan_id,
        "--description",
        "REST endpoints",
        "--priority",
        "2",
        "--depends-on",
        first,
        "--json",
    ).json()
    assert set(task) >= TASK_KEYS
    assert task["title"] == "API" and task["description"] == "REST endpoints"
    assert task["planId"] == plan_id and task["priority"] == 2
    assert task["dependsOn"] == [first] and task["blocked"] is True
    assert task["status"] == "open" and task["createdAt"].endswith("Z")
    shown = sf("task", "show", first, "--json").json()
    assert shown["effectivePriority"] == 2  # inherits the urgency of the task waiting on it
    listed = sf("task", "list", "--json").json()
    assert [t["id"] for t in listed] == [first, task["id"]]
    assert [t["id"] for t in sf("task", "list", "--plan", plan_id, "--json").json()] == [task["id"]]


def test_default_priority_is_three_and_range_is_enforced(initialised: Path, sf: SfRunner) -> None:
    assert sf("task", "create", "--title", "x", "--json").json()["priority"] == 3
    for bad in ("0", "6", "high"):
        result = sf("task", "create", "--title", "y", "--priority", bad, check=False)
        assert result.returncode != 0 and "priority" in result.stderr
    assert len(sf("task", "list", "--json").json()) == 1


def test_human_list_and_show(initialised: Path, sf: SfRunner) -> None:
    sf("task", "create", "--title", "Write docs")
    listing = sf("task", "list").stdout
    assert "t1" in listing and "Write docs" in listing and "open" in listing
    detail = sf("task", "show", "t1").stdout
    assert "Write docs" in detail and "priority" in detail


def test_plan_lifecycle_and_tree(initialised: Path, sf: SfRunner) -> None:
    # (A goal runs the director agent: see test_director.py.)
    plan_id = sf("plan", "create", "--title", "Sprint").stdout.strip()
    a = sf("task", "create", "--title", "Model", "--plan", plan_id).stdout.strip()
    sf("task", "create", "--title", "View", "--plan", plan_id, "--depends-on", a)
    plans = sf("plan", "list", "--json").json()
    assert plans[0]["status"] == "draft" and plans[0]["taskIds"] == ["t1", "t2"]
    tree = sf("plan", "show", plan_id).stdout
    assert tree.index("Model") < tree.index("View")
    assert sf("plan", "activate", plan_id, "--json").json()["status"] == "active"
    shown = sf("plan", "show", plan_id, "--json").json()
    assert [t["title"] for t in shown["tasks"]] == ["Model", "View"]


def test_cancel_and_retry(initialised: Path, sf: SfRunner) -> None:
    sf("task", "create", "--title", "x")
    assert sf("task", "cancel", "t1", "--json").json()["status"] == "cancelled"
    assert sf("task", "retry", "t1", "--json").json()["status"] == "open"
    result = sf("task", "retry", "t1", check=False)
    assert result.returncode != 0 and "t1 is open" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("task", "show", "t99"), "no task with id 't99'"),
        (("plan", "show", "p9"), "no plan with id or title 'p9'"),
        (("task", "create", "--title", "z", "--plan", "p9"), "no plan with id or title 'p9'"),
        (("task", "create", "--title", "z", "--depends-on", "t42"), "t42"),
        (("task", "create", "--title", "   "), "title must not be empty"),
        (("dep", "add", "t1", "t1"), "cannot depend on itself"),
        (("dep", "add", "t1", "t77"), "t77"),
        (("task", "list", "--status", "sleeping"), "sleeping"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    initialised: Path, sf: SfRunner, args: tuple[str, ...], message: str
) -> None:
    sf("task", "create", "--title", "Existing")
    result = sf(*args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""
    assert len(sf("task", "list", "--json").json()) == 1


def test_cycle_is_refused_naming_the_tasks(initialised: Path, sf: SfRunner) -> None:
    a = sf("task", "create", "--title", "A").stdout.strip()
    b = sf("task", "create", "--title", "B", "--depends-on", a).stdout.strip()
    c = sf("task", "create", "--title", "C", "--depends-on", b).stdout.strip()
    result = sf("dep", "add", a, c, check=False)
    assert result.returncode != 0
    assert "cycle" in result.stderr
    for name in (a, b, c, "'A'", "'B'", "'C'"):
        assert name in result.stderr
    assert sf("task", "show", a, "--json").json()["dependsOn"] == []


def test_status_counts(initialised: Path, sf: SfRunner) -> None:
    a = sf("task", "create", "--title", "A").stdout.strip()
    sf("task", "create", "--title", "B", "--depends-on", a)
    status = sf("status", "--json").json()
    assert status["tasksByStatus"]["open"] == 2
    assert status["ready"] == 1 and status["blocked"] == 1
    assert status["orchestrator"] is None
    assert "ready" in sf("status").stdout
