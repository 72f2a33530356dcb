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
    assert "starts stacked on t1" in prompts_of(fake_model, f"Stoneforge task {t2}:")[0]
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


def test_a_blocker_failing_sends_its_dependent_back_to_wait_with_its_work_kept(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    fast = repo.parent / "fast"
    log = make_project(
        repo,
        config="  maxConcurrent: 2\n  maxAttempts: 1\n",
        checks=[f"[ -e {fast} ] || [ -e app/two.py ] || sleep 12"],
    )
    start = git(repo, "rev-parse", "main")
    t1, t2 = chain(repo, ["Add one", "Add two on one"])
    fake_model.add_script(
        worker("app/one.py", ONE_RED, "Add one (wrong)") + worker("app/one.py", ONE, "Fix one"),
        marker=f"Stoneforge task {t1}:",
    )
    fake_model.add_script(
        worker("app/two.py", TWO, "Add two")
        + [Step.bash("git log --oneline -3"), Step.say("My work is on the branch already.")],
        marker=f"Stoneforge task {t2}:",
    )

    code, out, err = run_serve(repo, fake_model, timeout=300)

    assert code == 0, err
    assert sf("task", "show", t1, "--json").json()["status"] == "failed", out
    waiting = sf("task", "show", t2, "--json").json()
    # The dependent waits again (blocked behind its failed blocker), its MR refused ...
    assert waiting["status"] == "open" and waiting["blocked"], out
    assert waiting["mergeRequest"]["status"] == "rejected"
    assert "failed for good" in waiting["mergeRequest"]["reason"]
    # ... and its work is kept: on its branch and at the recovery ref its note names.
    ref = next(w for w in waiting["note"].split() if w.startswith("refs/stoneforge/recovery/t2/"))
    assert git(repo, "show", f"{ref.rstrip(';.,')}:app/two.py") == TWO.strip()
    assert git(repo, "show", f"{waiting['branch']}:app/two.py") == TWO.strip()
    assert "two.py" not in git(repo, "ls-tree", "-r", "--name-only", "main")

    # The blocker is fixed (retried); the dependent continues on its kept work and lands after.
    fast.touch()
    sf("task", "retry", t1)
    code, out, err = run_serve(repo, fake_model, timeout=300)

    assert code == 0, err
    evs = events(repo)
    assert [e.entity_id for e in evs if e.kind == "task.merged"] == [t1, t2], out
    assert_main_green(repo, log, start)
    assert git(repo, "show", "main:app/two.py") == TWO.strip()
    assert git(repo, "show", "main:app/one.py") == ONE.strip()
    landed = sf("task", "show", t2, "--json").json()["mergeRequest"]
    assert own_files(repo, landed["id"]) == ["app/two.py"]
    # Its second session was told that its branch moved onto the fixed blocker.
    second = prompts_of(fake_model, f"Stoneforge task {t2}:")[-1]
    assert "restacked" in second


def test_a_blocker_changed_by_its_review_restacks_the_dependent(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = reviewing(repo)
    start = git(repo, "rev-parse", "main")
    t1, t2 = chain(repo, ["Add one", "Add two on one"])
    fixed = ONE + "\n\ndef test_one_again():\n    assert one() + one() == 2\n"
    fake_model.add_script(
        worker("app/one.py", ONE, "Add one") + worker("app/one.py", fixed, "Test one more"),
        marker=f"Stoneforge task {t1}:",
    )
    fake_model.add_script(worker("app/two.py", TWO, "Add two"), marker=f"Stoneforge task {t2}:")
    fake_model.add_script(
        request_changes("app/one.py", 1, "test one() more than once"),
        marker=f"(review 1 of this task): task {t1}:",
    )
    fake_model.add_script(approve(), marker=f"(review 2 of this task): task {t1}:")
    fake_model.add_script(approve(), marker=f"(review 1 of this task): task {t2}:")

    code, out, err = run_serve(repo, fake_model, timeout=360)

    assert code == 0, err
    evs = events(repo)
    assert [e.entity_id for e in evs if e.kind == "task.merged"] == [t1, t2], out
    # t2 started on t1's first head, while t1 was in review ...
    assert first(evs, "task.dispatched", t2) < first(evs, "task.merged", t1)
    assert "t1" in stacked_at_start(evs, t2)["stacked_on"]
    # ... and was restacked on the head t1 had after its review asked for changes.
    t1_mr = sf("task", "show", t1, "--json").json()["mergeRequest"]
    t2_mr = sf("task", "show", t2, "--json").json()["mergeRequest"]
    restacks = [e.data for e in evs if e.kind == "task.restacked" and e.entity_id == t2]
    assert any(t1_mr["headCommit"] in (r["stacked_on"] or "") for r in restacks), restacks
    git(repo, "merge-base", "--is-ancestor", t1_mr["headCommit"], t2_mr["headCommit"])
    assert "one() + one()" in git(repo, "show", f"{t2_mr['headCommit']}:app/one.py")
    assert_main_green(repo, log, start)
    assert own_files(repo, t2_mr["id"]) == ["app/two.py"]
    # Its reviewer saw its own change only.
    [review] = prompts_of(fake_model, f"(review 1 of this task): task {t2}:")
    assert "app/two.py" in review and "+def one():" not in review
