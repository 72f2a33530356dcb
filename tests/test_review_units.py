"""The steward's review in parts: the read-only Bash guard, `submit_review`'s validation, the
reviewer profile and its sandbox, the store's migration, and the Reviewer on a real repository
with a stand-in agent (the real CLI runs in tests/test_steward_review.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from review_helpers import ReviewScript, ScriptedReviewProvider
from steward_helpers import StewardRig, StubProvider, commit_files, git
from stoneforge.agents import Role, build_spec
from stoneforge.agents.bash_policy import ReadOnlyBashPolicy
from stoneforge.agents.mcp_tools import ReviewSubmission, StoneforgeTools, ToolReply
from stoneforge.agents.sandbox import SandboxPolicy
from stoneforge.config import StoneforgeConfig
from stoneforge.models import MergeStatus, ReviewVerdict, TaskStatus
from stoneforge.orchestrator.review import Reviewer, comment_problems
from stoneforge.store import SCHEMA_VERSION, Store
from stoneforge.store.schema import _MIGRATIONS

READS = [
    "git log --oneline -5",
    "git diff main...HEAD -- app/",
    "git show HEAD:app/lib.py | head -20",
    "grep -rn 'def ' app/ 2>/dev/null",
    "find . -name '*.py' | wc -l",
    "git branch --contains HEAD",
    "cat README.md >&2",
]
WRITES = [
    "git commit --allow-empty -m x",
    "git reset --hard HEAD~1",
    "git checkout -b evil",
    "git switch -c evil",
    "git branch evil",
    "git tag v1",
    "git stash",
    "git add -A",
    "echo x > file.txt",
    "cat a >> b",
    "echo x | tee file.txt",
    "touch file.txt",
    "rm -rf app",
    "sed -i s/a/b/ app/lib.py",
    'python -c \'open("x", "w")\'',
    "find . -delete",
    "git -c core.pager='touch x' log",
    "git diff --output=x.patch",
    "bash -c 'git commit -m x'",
    "ls && git update-ref refs/heads/main HEAD",
]


@pytest.mark.parametrize("command", READS)
def test_reading_commands_run(command: str) -> None:
    assert ReadOnlyBashPolicy("main").check(command) is None


@pytest.mark.parametrize("command", WRITES)
def test_commands_that_write_are_refused(command: str) -> None:
    reason = ReadOnlyBashPolicy("main").check(command)
    assert reason is not None and "read-only" in reason, (command, reason)


async def test_submit_review_says_what_was_wrong() -> None:
    seen: list[ReviewSubmission] = []
    tools = StoneforgeTools(on_submit_review=seen.append, enabled=("submit_review",))
    bad = await tools.submit_review({"verdict": "lgtm", "summary": " ", "extra": 1})
    text = bad["content"][0]["text"]
    assert bad["is_error"] and not seen
    assert "verdict: Input should be 'approve' or 'request_changes'" in text
    assert "summary: Value error, must say what you found" in text
    assert "extra: unknown field" in text
    empty = await tools.submit_review({"verdict": "request_changes", "summary": "no"})
    assert (
        empty["is_error"]
        and "request_changes needs at least one comment" in (empty["content"][0]["text"])
    )
    comments = json.dumps([{"path": "./app/x.py", "line": "3", "body": "fix"}])
    good = await tools.submit_review(
        {"verdict": "request_changes", "summary": "one bug", "comments": comments}
    )
    assert (
        not good["is_error"] and "Review recorded (request_changes)" in good["content"][0]["text"]
    )
    assert seen[0].comments[0].path == "app/x.py" and seen[0].comments[0].line == 3


async def test_a_refusal_of_the_orchestrator_reaches_the_model() -> None:
    tools = StoneforgeTools(
        on_submit_review=lambda r: ToolReply("comments[1].path: not in the change", True),
        enabled=("submit_review",),
    )
    reply = await tools.submit_review({"verdict": "approve", "summary": "fine"})
    assert reply["is_error"] and "not in the change" in reply["content"][0]["text"]


def test_the_reviewer_profile_reads_only(tmp_path: Path) -> None:
    spec = build_spec(Role.REVIEWER, cwd=tmp_path, prompt="x", config_dir=tmp_path / "c")
    assert set(spec.tools or ()) == {"Read", "Glob", "Grep", "Bash"}
    assert "mcp__stoneforge__submit_review" in spec.allowed_tools
    assert not {"Write", "Edit", "NotebookEdit"} & set(spec.allowed_tools)
    assert isinstance(spec.bash_policy, ReadOnlyBashPolicy) and spec.read_only
    assert "Bash(git commit:*)" in spec.disallowed_tools
    checkout, config = tmp_path / "checkout", tmp_path / "config"
    checkout.mkdir()
    config.mkdir()
    args = SandboxPolicy.for_session(checkout, config, read_only=True).bwrap_args(checkout)
    binds = [args[i + 1] for i, a in enumerate(args) if a == "--bind"]
    ro = [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]
    assert str(checkout.resolve()) not in binds and str(checkout.resolve()) in ro
    assert str(config.resolve()) in binds


def test_review_is_on_by_default_with_two_rounds() -> None:
    steward = StoneforgeConfig().agents.steward
    assert steward.review is True and steward.maxReviewRounds == 2


def test_a_version_2_store_gains_reviews_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        for step in _MIGRATIONS[:2]:
            db.executescript(step)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO tasks (seq, id, title, priority, status, created_at, updated_at) "
            "VALUES (1, 't1', 'old', 3, 'review', '2026-01-01T00:00:00.000+00:00', "
            "'2026-01-01T00:00:00.000+00:00')"
        )
        db.execute(
            "INSERT INTO merge_requests (seq, id, task_id, status, branch, created_at) "
            "VALUES (1, 'mr1', 't1', 'pending', 'sf/t1', '2026-01-01T00:00:00.000+00:00')"
        )
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 6
        assert store.get_merge_request("mr1").reviews == []
        # ... and the stacked-branch columns of version 5, empty for what was there.
        assert store.get_task("t1").stacked_on == [] and store.get_task("t1").stack_base is None
        assert store.get_merge_request("mr1").base_commit is None
        review = store.add_review("mr1", ReviewVerdict.APPROVE, "fine")
        assert review.round == 1 and store.get_task("t1").merge_request.reviews == [review]


def _rig(tmp_path: Path, verdicts: list[str], rounds: int = 2) -> tuple[StewardRig, Reviewer]:
    script = ReviewScript(verdicts=verdicts)
    rig = StewardRig(
        tmp_path / "repo",
        checks=["true"],
        provider=ScriptedReviewProvider(StubProvider(), script),  # type: ignore[arg-type]
        review=True,
    )
    rig.config.agents.steward.maxReviewRounds = rounds
    reviewer = Reviewer(
        root=rig.root,
        config=rig.config,
        store=rig.store,
        provider=rig.provider,  # type: ignore[arg-type]
        target="main",
        agent_env={},
        note=rig.notes.append,
        on_reviewed=lambda: None,
    )
    return rig, reviewer


def _reviewing(rig: StewardRig, title: str, files: dict[str, str]):  # noqa: ANN202
    """A task in review whose merge request waits for the steward's review."""
    task = rig.store.create_task(title)
    branch = f"sf/{task.id}"
    head = commit_files(rig.root, rig.tip(), files, title, rig.index)
    git(rig.root, "update-ref", f"refs/heads/{branch}", head)
    attempt = rig.store.dispatch_task(task.id).dispatches
    mr = rig.store.complete_task(
        task.id, attempt=attempt, branch=branch, head_commit=head, summary=title, review=True
    )
    return rig.store.get_task(task.id), mr


async def test_an_approved_review_goes_on_to_the_checks_and_lands(tmp_path: Path) -> None:
    rig, reviewer = _rig(tmp_path, ["approve"])
    task, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    assert await rig.drain() == 0  # the steward does not see an MR under review
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.REVIEWING
    assert await reviewer.round()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.PENDING
    await rig.drain()
    landed = rig.store.get_merge_request(mr.id)
    assert landed.status == MergeStatus.MERGED
    assert [r.verdict for r in landed.reviews] == [ReviewVerdict.APPROVE]
    [session] = [s for s in rig.store.list_sessions(task_id=task.id) if s.role.value == "steward"]
    assert session.status.value == "completed" and landed.reviews[0].session_id == session.id
    rig.close()


async def test_requested_changes_send_the_task_back_without_costing_an_attempt(
    tmp_path: Path,
) -> None:
    rig, reviewer = _rig(tmp_path, ["request_changes"])
    task, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    assert await reviewer.round()
    after = rig.store.get_task(task.id)
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.REJECTED
    assert after.status == TaskStatus.OPEN and after.attempts == task.attempts - 1
    assert "feature.txt:1: rework feature.txt" in (after.note or "")
    assert "1 of 2 review rounds" in (after.note or "")
    rig.close()


async def test_no_verdict_twice_waits_for_a_person(tmp_path: Path) -> None:
    rig, reviewer = _rig(tmp_path, ["none", "crash"])
    task, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    assert await reviewer.round()
    waiting = rig.store.get_merge_request(mr.id)
    assert waiting.status == MergeStatus.AWAITING_APPROVAL and waiting.reviews == []
    assert "no verdict in 2 tries" in (waiting.reason or "")
    assert "sf merge approve" in (waiting.reason or "")
    assert [s.status.value for s in rig.store.list_sessions(task_id=task.id)] == [
        "completed",
        "crashed",
    ]
    assert rig.store.get_task(task.id).status == TaskStatus.REVIEW
    rig.close()


async def test_with_review_turned_off_waiting_mrs_go_on_unreviewed(tmp_path: Path) -> None:
    rig, reviewer = _rig(tmp_path, [])
    _, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    rig.config.agents.steward.review = False
    assert await reviewer.round()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.PENDING
    rig.close()


def test_comments_must_point_into_the_change(tmp_path: Path) -> None:
    rig, _ = _rig(tmp_path, [])
    _, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n2\n"})
    head = mr.head_commit or ""
    submission = ReviewSubmission.model_validate(
        {
            "verdict": "request_changes",
            "summary": "two problems",
            "comments": [
                {"path": "README.md", "line": 1, "body": "not touched by the change"},
                {"path": "feature.txt", "line": 9, "body": "past the end"},
                {"path": "feature.txt", "line": 2, "body": "fine"},
            ],
        }
    )
    problems = comment_problems(rig.root, head, ["feature.txt"], submission)
    assert problems == [
        "comments[1].path: 'README.md' is not a file this change touches (it touches: feature.txt)",
        "comments[2].line: feature.txt has 2 lines in the change's new version; line 9 is past "
        "its end",
    ]
    rig.close()


async def test_a_review_that_cannot_even_be_prepared_waits_for_a_person(tmp_path: Path) -> None:
    rig, reviewer = _rig(tmp_path, [])
    _, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    reviewer.target = "no-such-branch"  # git cannot find the merge base: not a verdict, twice
    assert await reviewer.round()
    waiting = rig.store.get_merge_request(mr.id)
    assert waiting.status == MergeStatus.AWAITING_APPROVAL
    assert "no verdict in 2 tries" in (waiting.reason or "") and "no-such-branch" in (
        waiting.reason or ""
    )
    rig.close()


async def test_a_provider_outage_spends_no_review_try(tmp_path: Path) -> None:
    rig, reviewer = _rig(tmp_path, ["overloaded", "overloaded", "overloaded", "approve"])
    task, mr = _reviewing(rig, "Feature", {"feature.txt": "1\n"})
    for n in range(3):  # however long the outage lasts, the MR waits for the provider
        assert await reviewer.round()
        assert rig.store.get_merge_request(mr.id).status == MergeStatus.REVIEWING
        assert reviewer._retry_in == 5.0 * 2**n  # providerBackoffS, doubling
    assert any("waits for the provider (529" in n for n in rig.notes), rig.notes
    assert await reviewer.round()  # the provider is back: the review runs and approves
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.PENDING
    assert rig.store.get_task(task.id).attempts == task.attempts
    rig.close()
