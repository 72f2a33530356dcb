"""Prepare a repository for the VS Code extension's protocol and end-to-end tests.

Usage: ``python tests/e2e/seed_workspace.py DIR [--forecast-conflict]`` (with the venv's python).
Prints a JSON object with the ids it created.

The state is what a user sees after a worker finished one task and the merge queue checked it:
a plan with a task in review whose branch really exists, its sessions (one handed off), the
handoff, the steward's review (approved, with one comment on calc.py line 7), and a merge request
awaiting approval whose candidate is the real merge commit of the branch into main. A second task waits on the first. An untracked file holds conflict markers.

Only the parts of a real run that need Claude Code (the sessions themselves) are written straight
to the store; everything git-side is real, so mergeDiff and approveMerge work on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import (
    CheckRun,
    Handoff,
    ReviewComment,
    ReviewVerdict,
    SessionRole,
    SessionStatus,
    utcnow,
)
from stoneforge.service import Service

BRANCH = "sf/t1-add-a-parser"
#: The review's comment: on line 7 of calc.py's new version (`left, right = text.split("+")`).
REVIEW_COMMENT = 'Split once: text.split("+", 1) keeps "1+2+3" from unpacking into three values.'
REVIEW_LINE = 7
RIVAL_BRANCH = "sf/t3-parse-with-a-regex"

CALC = """\
def add(a, b):
    return a + b


def parse(text):
    raise NotImplementedError
"""

CALC_ON_BRANCH = """\
def add(a, b):
    return a + b


def parse(text):
    \"\"\"Parse "a + b" into the two numbers.\"\"\"
    left, right = text.split("+")
    return int(left), int(right)
"""

CONFLICTED = """\
def greet(name):
<<<<<<< HEAD
    return f"Hello, {name}!"
=======
    return f"Hi {name}"
>>>>>>> sf/t2-use-the-parser
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "e2e@stoneforge.invalid")
    git(root, "config", "user.name", "Stoneforge e2e")
    git(root, "config", "commit.gpgsign", "false")
    (root / "calc.py").write_text(CALC)
    (root / "README.md").write_text("# calc\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "calc: add")
    # The task's branch, as a worker leaves it: one commit on top of main.
    git(root, "checkout", "-q", "-b", BRANCH)
    (root / "calc.py").write_text(CALC_ON_BRANCH)
    (root / "test_calc.py").write_text(
        "from calc import parse\n\n\ndef test_parse():\n    assert parse('1+2') == (1, 2)\n"
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "calc: parse a + b")
    git(root, "checkout", "-q", "main")


CALC_ON_RIVAL = """\
import re


def add(a, b):
    return a + b


def parse(text):
    a, b = re.fullmatch(r"\\s*(\\d+)\\s*\\+\\s*(\\d+)\\s*", text).groups()
    return int(a), int(b)
"""


def make_rival_branch(root: Path) -> None:
    git(root, "checkout", "-q", "-b", RIVAL_BRANCH, "main")
    (root / "calc.py").write_text(CALC_ON_RIVAL)
    git(root, "commit", "-q", "-am", "calc: parse with a regex")
    git(root, "checkout", "-q", "main")


def candidate_commit(root: Path) -> str:
    """The merge of the branch into main, built the way the steward builds it."""
    tree = git(root, "merge-tree", "--write-tree", "main", BRANCH)
    return git(root, "commit-tree", tree, "-p", "main", "-p", BRANCH, "-m", f"Merge {BRANCH} (t1)")


def seed(root: Path, forecast_conflict: bool = False) -> dict[str, str]:
    make_repo(root)
    service, _ = Service.init(root, actor="e2e-seed")
    config = root / ".stoneforge" / "config.yaml"
    # A person approves merges here, and the checks are instant.
    config.write_text(
        config.read_text()
        .replace("autoMerge: true", "autoMerge: false")
        .replace('checks: ["python -m pytest -q"]', 'checks: ["git --version"]')
    )
    with service:
        store = service.store
        # Straight to the store: with a goal, Service.create_plan would run a director session.
        plan = store.create_plan("Sprint 14", "Teach calc to parse sums")
        service.activate_plan(plan.id)
        task = service.create_task(
            "Add a parser", description="Parse 'a + b'", plan_id=plan.id, priority=2
        )
        blocked = service.create_task("Use the parser", plan_id=plan.id, depends_on=[task.id])
        attempt = store.dispatch_task(task.id).dispatches
        # The task's checkout, as a worker leaves it (landing removes it, and the branch with it).
        checkout = root / ".stoneforge" / "worktrees" / "t1-add-a-parser"
        git(root, "worktree", "add", "-q", str(checkout), BRANCH)
        store.update_task(task.id, branch=BRANCH, worktree=str(checkout))

        first = store.start_session(task.id, SessionRole.WORKER)
        store.update_session(
            first.id,
            status=SessionStatus.HANDED_OFF,
            context_tokens=141_200,
            input_tokens=388_000,
            output_tokens=9_400,
            cost_usd=0.42,
            ended_at=utcnow(),
        )
        handoff = store.add_handoff(
            Handoff(
                task_id=task.id,
                session_id=first.id,
                done="Wrote parse() for 'a + b' and a test for it.",
                remaining="Whitespace around the numbers; error messages for bad input.",
                files_touched=["calc.py", "test_calc.py"],
                decisions=["Split on '+' rather than a regex: the grammar is one operator."],
                failing_tests=[],
                next_step="Strip whitespace in parse() and add a test for ' 1 + 2 '.",
                commit=git(root, "rev-parse", BRANCH),
                source="agent",
                created_at=utcnow(),
            )
        )
        second = store.start_session(task.id, SessionRole.WORKER)
        store.update_session(
            second.id,
            status=SessionStatus.COMPLETED,
            context_tokens=38_500,
            input_tokens=90_000,
            output_tokens=2_100,
            cost_usd=0.11,
            ended_at=utcnow(),
        )
        mr = store.complete_task(
            task.id,
            attempt=attempt,
            branch=BRANCH,
            head_commit=git(root, "rev-parse", BRANCH),
            summary="calc: parse a + b (1 commit, 2 files)",
            review=True,
        )
        reviewer = store.start_session(task.id, SessionRole.STEWARD)
        store.update_session(reviewer.id, status=SessionStatus.COMPLETED, ended_at=utcnow())
        store.add_review(
            mr.id,
            ReviewVerdict.APPROVE,
            "parse() does what the task asks, and the test covers it.",
            [ReviewComment(path="calc.py", line=REVIEW_LINE, body=REVIEW_COMMENT)],
            session_id=reviewer.id,
            head_commit=git(root, "rev-parse", BRANCH),
        )
        store.transition_merge_request(mr.id, MrEvent.PASS_REVIEW)
        store.transition_merge_request(mr.id, MrEvent.CHECK)
        store.transition_merge_request(
            mr.id,
            MrEvent.AWAIT_APPROVAL,
            candidate_commit=candidate_commit(root),
            checks=[
                CheckRun(
                    command="git --version", exit_code=0, duration_s=0.01, output_tail="git 2.39"
                )
            ],
        )

        rival = None
        if forecast_conflict:
            make_rival_branch(root)
            rival = service.create_task("Parse with a regex", plan_id=plan.id)
            store.dispatch_task(rival.id)
            store.transition_task(rival.id, TaskEvent.COMPLETE, branch=RIVAL_BRANCH)

    # Untracked, so it never lands anywhere; the server flags its markers once it is opened.
    (root / "greet.py").write_text(CONFLICTED)
    return {
        "root": str(root),
        "planId": plan.id,
        "taskId": task.id,
        "blockedTaskId": blocked.id,
        "sessionIds": f"{first.id},{second.id}",
        "reviewComment": REVIEW_COMMENT,
        "handoffId": handoff.id or "",
        "mrId": mr.id,
        "branch": BRANCH,
        "conflictFile": "greet.py",
        "worktree": str(checkout),
        "rivalTaskId": rival.id if rival else "",
    }


def main() -> None:
    args = sys.argv[1:]
    conflict = "--forecast-conflict" in args
    paths = [a for a in args if a != "--forecast-conflict"]
    if len(paths) != 1:
        sys.exit("usage: seed_workspace.py DIR [--forecast-conflict]")
    print(json.dumps(seed(Path(paths[0]).resolve(), forecast_conflict=conflict)))


if __name__ == "__main__":
    main()
