"""Stacked branches (`orchestrator.stacking`, on by default) through `sf serve`: real Claude Code
sessions against the scripted endpoint, real git, real checks.

A dependent starts while its blocker is in review, on a branch stacked on the blocker's head;
it is restacked when the blocker lands, changes or fails, and it lands only after its blocker,
on a target whose every first-parent commit was checked. Its diff is its own work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SfRunner, git
from serve_helpers import run_serve
from stoneforge.demo import FakeModel, Step
from stoneforge.models import Event
from stoneforge.service import Service
from test_steward_review import approve, request_changes, reviewing
from test_steward_serve import assert_main_green, make_project, open_store, prompts_of, worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ONE = "def one():\n    return 1\n\n\ndef test_one():\n    assert one() == 1\n"
ONE_RED = "def one():\n    return 2\n\n\ndef test_one():\n    assert one() == 1\n"
TWO = (
    "from app.one import one\n\n\ndef two():\n    return one() + 1\n\n\n"
    "def test_two():\n    assert two() == 2\n"
)
THREE = (
    "from app.two import two\n\n\ndef three():\n    return two() + 1\n\n\n"
    "def test_three():\n    assert three() == 3\n"
)


def chain(repo: Path, titles: list[str]) -> list[str]:
    """Tasks where each depends on the one before."""
    ids: list[str] = []
    with open_store(repo) as store:
        for title in titles:
            ids.append(store.create_task(title, depends_on=ids[-1:]).id)
    return ids


def events(repo: Path) -> list[Event]:
    with open_store(repo) as store:
        return store.events_since(0, limit=100_000)


def first(evs: list[Event], kind: str, task_id: str) -> int:
    """The position of the first ``kind`` event of ``task_id``."""
    return next(i for i, e in enumerate(evs) if e.kind == kind and e.entity_id == task_id)


def stacked_at_start(evs: list[Event], task_id: str) -> dict:
    """What the task's branch was first recorded stacked on (`task.restacked`)."""
    found = next(e for e in evs if e.kind == "task.restacked" and e.entity_id == task_id)
    return found.data


def own_files(repo: Path, mr_id: str) -> list[str]:
    """The files of a merge request's diff as the editor and `sf merge` get it."""
    with Service.open(repo) as service:
        return sorted(f["path"] for f in service.merge_diff(mr_id)["files"])


def slow_until(flag: Path, seconds: int) -> str:
    """A check that takes ``seconds`` until ``flag`` exists: keeps a blocker in the queue while
    its dependents start."""
    return f"[ -e {flag} ] || sleep {seconds}"


def test_a_chain_starts_stacked_and_lands_in_order_with_every_commit_checked(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    # t1's own check is slow: t2 and t3 start (stacked) while it is in the queue.
    log = make_project(
        repo, config="  maxConcurrent: 3\n", checks=["[ -e app/two.py ] || sleep 12"]
    )
    start = git(repo, "rev-parse", "main")
    t1, t2, t3 = chain(repo, ["Add one", "Add two on one", "Add three on two"])
    for task_id, path, text in ((t1, "one", ONE), (t2, "two", TWO), (t3, "three", THREE)):
        fake_model.add_script(
            worker(f"app/{path}.py", text, f"Add {path}"), marker=f"Stoneforge task {task_id}:"
        )

    code, out, err = run_serve(repo, fake_model, timeout=300)

    assert code == 0, err
    evs = events(repo)
    statuses = {t: sf("task", "show", t, "--json").json()["status"] for t in (t1, t2, t3)}
    assert statuses == {t1: "merged", t2: "merged", t3: "merged"}, out
    # t2 and t3 started before t1 landed, each on the branch of the task it waits on.
    assert first(evs, "task.dispatched", t2) < first(evs, "task.merged", t1), out
    assert first(evs, "task.dispatched", t3) < first(evs, "task.merged", t1), out
    assert "t1" in stacked_at_start(evs, t2)["stacked_on"]
    assert "t2" in stacked_at_start(evs, t3)["stacked_on"]
    # ... and still landed in order, every first-parent commit of main checked and green.
    merged = [e.entity_id for e in evs if e.kind == "task.merged"]
    assert merged == [t1, t2, t3]
    assert_main_green(repo, log, start)
    for path in ("one", "two", "three"):
        assert (repo / "app" / f"{path}.py").exists() or git(repo, "show", f"main:app/{path}.py")
    # Each merge request's diff is its own work, not its blockers'.
    mrs = {mr["taskId"]: mr["id"] for mr in sf("merge", "list", "--json").json()["mergeRequests"]}
    assert own_files(repo, mrs[t1]) == ["app/one.py"]
    assert own_files(repo, mrs[t2]) == ["app/two.py"]
    assert own_files(repo, mrs[t3]) == ["app/three.py"]
