"""`sf serve` with budgets: the real orchestrator, the real Claude Code CLI per session, real git;
only the model is scripted, and its reported usage makes each turn cost a known amount.

The worker model is Sonnet 4 ($3 per million input tokens, $15 per million output tokens), so a
turn reporting 10,000 input and 100 output tokens costs $0.0315 (the CLI's own total for the
session is computed from the same usage with the same prices).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import run_serve
from stoneforge.demo import FakeModel, Step, Usage
from stoneforge.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

#: $0.0315 and $0.0615 a turn.
SMALL = Usage(input_tokens=10_000, output_tokens=100)
LARGE = Usage(input_tokens=20_000, output_tokens=100)


def configure(repo: Path, budgets: str) -> None:
    write_config(
        repo, "orchestrator:\n  retryBackoffS: 0.2\nmerge:\n  checks: []\nbudgets:\n" + budgets
    )


def task_json(sf: SfRunner, task_id: str) -> dict:
    return sf("task", "show", task_id, "--json").json()


def test_a_task_budget_ends_the_session_at_the_turn_past_it_and_a_retry_finishes_it(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised, "  perTaskUsd: 0.10\n")
    task_id = sf("task", "create", "--title", "Three files").stdout.strip()
    # The continuation (after `sf task retry --budget`) reads the handoff; added first, as its
    # marker is the more specific route.
    fake_model.add_script(
        [
            Step.write("c.py", "C = 3\n", usage=SMALL),
            Step.bash("git add -A && git commit -q -m 'Add c'", usage=SMALL),
            Step.mcp("complete_task", summary="a, b and c"),
            Step.say("All three files are there."),
        ],
        marker="Handoff from the previous session",
    )

    def answer(request: object) -> Step:
        # The request is sent while the CLI runs the turn's tool; it reaches the model with the
        # request after it or the one after that (the CLI attaches queued messages mid-turn).
        if "reached its budget" in getattr(request, "all_text", ""):
            return Step.mcp(
                "handoff",
                done="a.py committed, b.py written",
                remaining="c.py",
                filesTouched=["a.py", "b.py"],
                decisions=[],
                failingTests=[],
                nextStep="Write c.py",
            )
        return Step.bash("sleep 1")  # no work: waiting for the request

    fake_model.add_script(
        [
            Step.write("a.py", "A = 1\n", usage=SMALL),  # $0.0315
            Step.bash("git add -A && git commit -q -m 'Add a'", usage=LARGE),  # $0.093
            Step.write("b.py", "B = 2\n", usage=SMALL),  # $0.1245: past $0.10, not committed
            answer,
            answer,
            answer,
            Step.say("Handed off."),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "budget_exceeded", task
    [session] = task["sessions"]
    assert session["status"] == "handed_off"
    with Store(initialised / ".stoneforge" / "state.db", actor="test") as store:
        [reached] = [e for e in store.events_since(0) if e.kind == "session.budget_reached"]
    # Acted at the third turn, the first one past the budget (not at the second: $0.093).
    assert reached.entity_id == session["id"]
    assert 0.10 <= reached.data["costUsd"] < 0.125, reached.data
    assert "of $0.10 (budgets.perTaskUsd)" in reached.data["why"]
    # Nothing is lost: b.py (left uncommitted) is committed on the branch, the handoff is kept.
    branch = task["branch"]
    assert git(initialised, "show", f"{branch}:a.py") == "A = 1"
    assert git(initialised, "show", f"{branch}:b.py") == "B = 2"
    [handoff] = task["handoffs"]  # the agent's own: it was asked
    assert handoff["nextStep"] == "Write c.py" and handoff["commit"]
    assert handoff["done"] == "a.py committed, b.py written"
    assert "Budget reached" in task["note"] and f"sf task retry {task_id} --budget" in task["note"]
    assert task["cost"]["costUsd"] == pytest.approx(session["costUsd"]) and session["costUsd"] > 0.1
    assert "stopped at its budget" in out

    # A person gives it more: it continues from the handoff and lands.
    refused = sf("task", "retry", task_id, "--budget", "0.05", check=False)
    assert refused.returncode == 1 and "would stop again at once" in refused.stderr
    assert sf("task", "retry", task_id, "--budget", "1").stdout.strip() == f"{task_id} open"
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "merged", task
    assert task["budgetUsd"] == 1.0
    first, second = task["sessions"]
    assert second["status"] == "completed"
    continuation = fake_model.main_requests("Handoff from the previous session")[0]
    assert "Write c.py" in continuation.first_user_text
    assert "raised this task's budget (now $1.00" in continuation.first_user_text
    for name, text in (("a.py", "A = 1"), ("b.py", "B = 2"), ("c.py", "C = 3")):
        assert git(initialised, "show", f"main:{name}") == text

    # `sf cost --json`: every roll-up equals the sum of the sessions.
    report = sf("cost", "--json").json()
    sessions = [s for t in sf("task", "list", "--json").json() for s in t["sessions"]]
    assert report["total"]["sessions"] == len(sessions) == 2
    assert report["total"]["costUsd"] == pytest.approx(sum(s["costUsd"] for s in sessions))
    assert report["total"]["outputTokens"] == sum(s["outputTokens"] for s in sessions)
    [by_task] = report["byTask"]
    assert by_task["key"] == task_id and by_task["title"] == "Three files"
    assert by_task["costUsd"] == pytest.approx(task["cost"]["costUsd"])
    assert [r["key"] for r in report["byRole"]] == ["worker"]
    assert report["byPlan"][0]["key"] is None  # a task of no plan
    for way in ("byTask", "byPlan", "byRole", "byDay"):
        assert sum(r["costUsd"] for r in report[way]) == pytest.approx(report["total"]["costUsd"])
    shown = sf("task", "show", task_id).stdout
    assert f"${task['cost']['costUsd']:.2f}" in shown and "its own budget: $1.00" in shown


def test_a_session_that_ends_past_its_budget_without_a_handoff_is_not_landed(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    """The agent ends its turn before it reads the budget request (or ignores it): the task still
    stops at its budget, with a handoff written from the facts, and nothing of it lands."""
    configure(initialised, "  perTaskUsd: 0.05\n")
    task_id = sf("task", "create", "--title", "Past its budget").stdout.strip()
    fake_model.add_script(
        [
            Step.bash(  # $0.0615: past $0.05 at the first turn
                "echo A = 1 > a.py && git add -A && git commit -q -m 'Add a'", usage=LARGE
            ),
            Step.write("b.py", "B = 2\n"),
            Step.say("Done."),
        ],
        marker=f"Stoneforge task {task_id}:",
        then=Step.say("Done."),
    )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "budget_exceeded", task
    [session] = task["sessions"]
    assert session["status"] == "handed_off"
    [handoff] = task["handoffs"]
    assert handoff["source"] == "orchestrator" and handoff["commit"]
    assert git(initialised, "show", f"{task['branch']}:b.py") == "B = 2"  # nothing is lost
    assert "a.py" not in git(initialised, "ls-tree", "-r", "--name-only", "main")
    assert sf("merge", "list", "--json").json()["mergeRequests"] == []


def test_a_day_budget_stops_dispatch_with_the_reason_in_status(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised, "  perDayUsd: 0.05\n")
    first = sf("task", "create", "--title", "First", "--priority", "1").stdout.strip()
    second = sf("task", "create", "--title", "Second", "--priority", "2").stdout.strip()
    for task_id in (first, second):
        fake_model.add_script(
            [
                Step.bash(  # $0.0615: past the day's $0.05 at the first turn
                    f"echo {task_id} > {task_id}.txt && git add -A && git commit -q -m {task_id}",
                    usage=LARGE,
                ),
                Step.say("Done.", usage=Usage(input_tokens=1, output_tokens=1)),
            ],
            marker=f"Stoneforge task {task_id}:",
        )
    code, out, err = run_serve(initialised, fake_model, "--max-concurrent", "1")
    assert code == 0, err
    # The running session was not stopped (a day budget stops new dispatch only) ...
    assert task_json(sf, first)["status"] == "merged"
    # ... and nothing started after it.
    held = task_json(sf, second)
    assert held["status"] == "open" and held["sessions"] == []
    assert "dispatch held: day budget reached: $0.06 of $0.05 (budgets.perDayUsd)" in out, out
    status = sf("status", "--json").json()
    [hold] = status["budgetHolds"]
    assert hold["scope"] == "day" and "nothing is dispatched until 00:00 UTC" in hold["reason"]
    assert status["costToday"]["costUsd"] == pytest.approx(0.0615, abs=0.002)
    assert "dispatch held: day budget reached" in sf("status").stdout
    assert json.dumps(status["costToday"]) == json.dumps(status["costTotal"])
