"""The steward reviews each merge request before its checks: `sf serve` with real Claude Code
sessions (worker and reviewer) against the scripted endpoint, real git, real checks.

The reviewer is a steward session that can change nothing (Read, Glob, Grep and reading shell
commands; contained, its checkout is read-only); it answers through `submit_review`. An approval
sends the MR on to the checks; a request for changes sends the task back to a worker with the
comments in its prompt, until `maxReviewRounds` is used up and a person decides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import run_serve
from stoneforge.demo import FakeModel, Step
from stoneforge.store import Store
from test_steward_serve import assert_main_green, make_project, prompts_of, worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

HELPER = "def double(x):\n    return x * 3\n\n\ndef test_double():\n    assert double(0) == 0\n"
FIXED = "def double(x):\n    return x * 2\n\n\ndef test_double():\n    assert double(2) == 4\n"
COMMENT = "double() multiplies by 3; it must return x * 2, and test it with a non-zero value"


def reviewing(repo: Path, review: str = "") -> Path:
    """The project of the steward tests with the review on (and ``review`` steward keys)."""
    log = make_project(repo)
    config = (repo / ".stoneforge" / "config.yaml").read_text()
    write_config(repo, config + f"agents:\n  steward:\n    review: true\n{review}", review=True)
    return log


def review_marker(mr_id: str) -> str:
    return f"Stoneforge review of merge request {mr_id} "


def approve(summary: str = "Does what the task asks; the test covers it.") -> list[Step]:
    return [
        Step.bash("git log --oneline -3 && git diff HEAD~1 --stat"),
        Step.mcp("submit_review", verdict="approve", summary=summary, comments=[]),
        Step.say("Reviewed."),
    ]


def request_changes(path: str, line: int, body: str) -> list[Step]:
    comment = {"path": path, "line": line, "body": body}
    return [
        Step.mcp(
            "submit_review",
            verdict="request_changes",
            summary="The helper computes the wrong value.",
            comments=[comment],
        ),
        Step.say("Reviewed."),
    ]


def tool_results(model: FakeModel, marker: str) -> list[str]:
    """Every tool result the CLI sent back in the sessions routed by ``marker``."""
    texts: list[str] = []
    for request in model.main_requests(marker):
        for block in request.tool_results():
            texts.append(request.tool_result_text(block))
    return texts


def test_a_review_approves_and_the_mr_lands_while_its_attempts_to_write_change_nothing(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = reviewing(repo)
    start = git(repo, "rev-parse", "main")
    task = sf("task", "create", "--title", "Add a farewell", "--description", "bye(name)").stdout
    task = task.strip()
    farewell = (
        'def bye(name):\n    return f"bye {name}"\n\n\ndef test_bye():\n    assert bye("x")\n'
    )
    fake_model.add_script(
        worker("app/farewell.py", farewell, "Add a farewell"), marker=f"Stoneforge task {task}:"
    )
    fake_model.add_script(
        [
            Step.write("pwned.txt", "written by the reviewer\n"),
            Step.bash("echo pwned > pwned.txt; echo exit=$?"),
            Step.bash("git commit --allow-empty -qm 'reviewer commit'; echo exit=$?"),
            Step.bash("git reset --hard HEAD~1; echo exit=$?"),
            Step.bash("git checkout -q -b evil; echo exit=$?"),
            Step.bash(f"git -C {repo} branch -f main HEAD~1; echo exit=$?"),
            Step.mcp("submit_review", verdict="lgtm", summary=""),
            *approve(),
        ],
        marker=review_marker("mr1"),
    )
    refs_before = git(repo, "for-each-ref", "--format=%(refname)")

    code, out, err = run_serve(repo, fake_model, timeout=360)

    assert code == 0, err
    shown = sf("merge", "show", "mr1", "--json").json()
    assert shown["status"] == "merged", shown
    [review] = shown["reviews"]
    assert review["verdict"] == "approve" and review["round"] == 1
    assert review["summary"] == "Does what the task asks; the test covers it."
    assert review["headCommit"] == shown["headCommit"] and review["sessionId"]
    assert_main_green(repo, log, start)
    # The reviewer's session is a steward session of the task, and it read the task and the diff.
    sessions = sf("task", "show", task, "--json").json()["sessions"]
    assert [s["role"] for s in sessions] == ["worker", "steward"]
    [prompt] = prompts_of(fake_model, review_marker("mr1"))
    assert "Add a farewell" in prompt and "bye(name)" in prompt
    assert "+def bye(name):" in prompt and "app/farewell.py" in prompt
    # Every attempt to change something was refused, and nothing changed.
    results = "\n".join(tool_results(fake_model, review_marker("mr1")))
    assert "No such tool available: Write" in results
    assert results.count("this session is read-only") >= 5, results
    assert "git commit` changes the repository" in results
    assert "exit=" not in results.replace("echo exit=$?", "")  # none of those commands ran
    assert "verdict: Input should be 'approve' or 'request_changes'" in results
    assert "summary:" in results and "Review recorded (approve)" in results
    checkout = repo / ".stoneforge" / "worktrees" / "_review"
    assert not (checkout / "pwned.txt").exists() and not (repo / "pwned.txt").exists()
    assert git(checkout, "rev-parse", "HEAD") == shown["headCommit"]
    assert git(checkout, "status", "--porcelain") == ""
    refs = git(repo, "for-each-ref", "--format=%(refname)")
    assert "evil" not in refs and set(refs.split()) <= set(refs_before.split())
    assert "reviewer commit" not in git(repo, "log", "--all", "--format=%s")
    human = sf("merge", "show", "mr1").stdout
    assert "review 1 approved" in human and "Does what the task asks" in human
    assert "the review approved it" in out


def test_requested_changes_reach_the_worker_who_fixes_them_and_the_second_review_approves(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    log = reviewing(repo)
    start = git(repo, "rev-parse", "main")
    task = sf("task", "create", "--title", "Add double(x)").stdout.strip()
    fake_model.add_script(
        worker("app/helper.py", HELPER, "Add double") + worker("app/helper.py", FIXED, "Fix it"),
        marker=f"Stoneforge task {task}:",
    )
    fake_model.add_script(request_changes("app/helper.py", 2, COMMENT), marker=review_marker("mr1"))
    fake_model.add_script(approve("Fixed as asked."), marker=review_marker("mr2"))

    code, out, err = run_serve(repo, fake_model, timeout=360)

    assert code == 0, err
    first = sf("merge", "show", "mr1", "--json").json()
    assert first["status"] == "rejected" and "asked for changes" in first["reason"]
    [asked] = first["reviews"]
    assert asked["verdict"] == "request_changes"
    assert asked["comments"] == [{"path": "app/helper.py", "line": 2, "body": COMMENT}]
    second = sf("merge", "show", "mr2", "--json").json()
    assert second["status"] == "merged"
    assert [r["verdict"] for r in second["reviews"]] == ["approve"]
    assert second["reviews"][0]["round"] == 2
    # The worker's next session got the comment, anchored, in its first message.
    prompts = prompts_of(fake_model, f"Stoneforge task {task}:")
    assert len(prompts) == 2
    assert f"app/helper.py:2: {COMMENT}" in prompts[1]
    assert "asked for changes" in prompts[1] and COMMENT not in prompts[0]
    # The second reviewer saw the first review too.
    [again] = prompts_of(fake_model, review_marker("mr2"))
    assert COMMENT in again
    # A review round is not a failed attempt.
    shown = sf("task", "show", task, "--json").json()
    assert shown["status"] == "merged" and shown["attempts"] == 1
    assert git(repo, "show", "main:app/helper.py") == FIXED.strip()
    assert_main_green(repo, log, start)
    human = sf("merge", "show", "mr1").stdout
    assert "changes requested" in human and "app/helper.py:2" in human


def test_a_review_that_never_approves_leaves_the_mr_to_a_person_after_max_rounds(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    reviewing(repo, "    maxReviewRounds: 2\n")
    start = git(repo, "rev-parse", "main")
    task = sf("task", "create", "--title", "Add double(x)").stdout.strip()
    fake_model.add_script(
        worker("app/helper.py", HELPER, "Add double")
        + worker("app/helper.py", HELPER.replace("x * 3", "3 * x"), "Reorder"),
        marker=f"Stoneforge task {task}:",
    )
    for mr in ("mr1", "mr2"):
        fake_model.add_script(
            request_changes("app/helper.py", 2, COMMENT), marker=review_marker(mr)
        )

    code, out, err = run_serve(repo, fake_model, timeout=360)

    assert code == 0, err  # idle: the MR waits for a person
    mrs = sf("merge", "list", "--json").json()["mergeRequests"]
    assert [m["status"] for m in mrs] == ["rejected", "awaiting_approval"]
    waiting = mrs[1]
    assert "maxReviewRounds is 2" in waiting["reason"] and "a person decides" in waiting["reason"]
    assert [r["round"] for m in mrs for r in m["reviews"]] == [1, 2]
    shown = sf("task", "show", task, "--json").json()
    assert shown["status"] == "review" and shown["attempts"] == 1  # not failed: a person decides
    assert len(prompts_of(fake_model, f"Stoneforge task {task}:")) == 2  # no third worker session
    assert git(repo, "rev-parse", "main") == start
    # A person approves it anyway: it goes on to its checks (not reviewed again) and lands.
    approved = sf("merge", "approve", "mr2", "--json").json()
    assert approved["status"] == "pending" and "goes on to its checks" in approved["reason"]
    code, out, err = run_serve(repo, fake_model, timeout=200)
    assert code == 0, err
    assert sf("merge", "show", "mr2", "--json").json()["status"] == "merged"
    with Store(repo / ".stoneforge" / "state.db") as store:
        assert len(store.list_reviews(task_id=task)) == 2
