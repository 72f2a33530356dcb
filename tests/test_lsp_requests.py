"""The language server over stdio: requests, commands, notifications, errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from conftest import GIT_ENV
from lsp_helpers import Changes, lsp_session, request
from stoneforge.agents.sandbox import probe
from stoneforge.lifecycle import MrEvent
from stoneforge.models import ReviewComment, ReviewVerdict
from stoneforge.store import Store


async def test_task_and_plan_requests_round_trip(repo: Path) -> None:
    async with lsp_session(repo) as client:
        plan = await request(client, "stoneforge/createPlan", {"title": "Sprint", "activate": True})
        assert plan["id"] == "p1" and plan["status"] == "active"
        first = await request(client, "stoneforge/createTask", {"title": "Model", "planId": "p1"})
        second = await request(
            client,
            "stoneforge/createTask",
            {"title": "View", "planId": "p1", "priority": 1, "dependsOn": [first["id"]]},
        )
        assert second["blocked"] is True and second["dependsOn"] == [first["id"]]
        listed = await request(client, "stoneforge/listTasks", {"planId": "p1"})
        assert [t["title"] for t in listed["tasks"]] == ["Model", "View"]
        assert listed["tasks"][0]["effectivePriority"] == 1
        loose = await request(client, "stoneforge/createTask", {"title": "Loose"})
        tree = await request(client, "stoneforge/taskTree")
        assert [p["id"] for p in tree["plans"]] == ["p1"]
        assert [t["id"] for t in tree["plans"][0]["tasks"]] == [first["id"], second["id"]]
        assert [t["id"] for t in tree["unplanned"]] == [loose["id"]]
        assert tree["handoffAtTokens"] == 140000
        status = await request(client, "stoneforge/status")
        assert status["tasksByStatus"]["open"] == 3 and status["serving"] is False
        # How agents would run: the editor says it loudly when they would run uncontained.
        sandbox = status["sandbox"]
        assert sandbox["mode"] == "auto" and sandbox["contained"] == probe().available
        assert (sandbox["warning"] is None) == sandbox["contained"]
        assert status["agents"] == []
        cancelled = await request(client, "stoneforge/cancelTask", {"id": loose["id"]})
        assert cancelled["status"] == "cancelled"
        retried = await request(client, "stoneforge/retryTask", {"id": loose["id"]})
        assert retried["status"] == "open"
        assert (await request(client, "stoneforge/handoffs"))["handoffs"] == []
        assert (await request(client, "stoneforge/mergeRequests"))["mergeRequests"] == []
        forecast = await request(client, "stoneforge/forecast")
        assert forecast["target"] == "main" and forecast["pairs"] == []
    # The server wrote to the repository's own store: the CLI sees the same tasks.
    out = subprocess.run(
        [sys.executable, "-m", "stoneforge", "task", "list", "--json"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
        check=True,
    )
    assert '"Loose"' in out.stdout


async def test_execute_command_reaches_the_same_methods(repo: Path) -> None:
    async with lsp_session(repo) as client:
        task = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="stoneforge.createTask", arguments=[{"title": "Via command"}]
            )
        )
        from lsp_helpers import plain

        assert plain(task)["title"] == "Via command"
        listed = plain(
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="stoneforge.listTasks", arguments=[{}])
            )
        )
        assert [t["title"] for t in listed["tasks"]] == ["Via command"]


@pytest.mark.parametrize(
    ("method", "params", "message"),
    [
        ("stoneforge/createTask", {}, "title: Field required"),
        ("stoneforge/createTask", {"title": 7}, "title: Input should be a valid string"),
        (
            "stoneforge/createTask",
            {"title": "x", "priority": 9},
            "priority: Input should be less than or equal to 5",
        ),
        ("stoneforge/createTask", {"title": "x", "priority": "1"}, "priority"),
        ("stoneforge/createTask", {"title": "x", "dependsOn": ["t404"]}, "t404"),
        (
            "stoneforge/createTask",
            {"title": "x", "planId": "p404"},
            "no plan with id or title 'p404'",
        ),
        ("stoneforge/createTask", ["not", "an", "object"], "expected an object"),
        ("stoneforge/listTasks", {"status": "sleeping"}, "status"),
        ("stoneforge/cancelTask", {"id": "t404"}, "no task with id 't404'"),
        ("stoneforge/activatePlan", {}, "planId: Field required"),
        ("stoneforge/mergeDiff", {"id": "mr9"}, "no merge request with id 'mr9'"),
        ("stoneforge/commitDiff", {"commit": "abcdef12"}, "no commit 'abcdef12'"),
        ("stoneforge/commitDiff", {"commit": "--output=/tmp/x"}, "commit: String should match"),
    ],
)
async def test_bad_params_get_readable_errors(
    repo: Path, method: str, params: object, message: str
) -> None:
    async with lsp_session(repo) as client:
        with pytest.raises(JsonRpcException) as info:
            await request(client, method, params)
        assert message in str(info.value)
        assert info.value.code == -32602
        # Still alive and nothing was half-created.
        assert (await request(client, "stoneforge/listTasks"))["tasks"] == []


async def test_unknown_method_is_method_not_found(repo: Path) -> None:
    async with lsp_session(repo) as client:
        with pytest.raises(JsonRpcException) as info:
            await request(client, "stoneforge/doesNotExist", {})
        assert info.value.code == -32601
        assert (await request(client, "stoneforge/status"))["ready"] == 0


async def test_changed_is_sent_for_own_and_other_processes_changes(repo: Path) -> None:
    async with lsp_session(repo) as client:
        changes = Changes(client)
        task = await request(client, "stoneforge/createTask", {"title": "Mine"})
        await changes.carrying("task.created", task["id"])
        subprocess.run(
            [sys.executable, "-m", "stoneforge", "task", "create", "--title", "From the CLI"],
            cwd=repo,
            check=True,
            capture_output=True,
            env={**os.environ, **GIT_ENV},
        )
        await changes.carrying("task.created", "t2")


async def test_a_landing_pause_reaches_the_client_in_changed_and_status(repo: Path) -> None:
    """The steward of another process pauses landing: `stoneforge/changed` carries the pause
    (no extra request needed) and `stoneforge/status` shows it; resuming clears both."""
    from stoneforge.orchestrator.daemon import LEASE_NAME
    from stoneforge.orchestrator.pause import PAUSED, RESUMED
    from stoneforge.store import Store

    reason = f"{repo} has uncommitted changes in a.py, b.py"
    async with lsp_session(repo) as client:
        assert (await request(client, "stoneforge/status"))["landingPaused"] is None
        store = Store(repo / ".stoneforge" / "state.db")  # made by the server on start
        store.acquire_lease(LEASE_NAME, "other-process", 20.0)  # an orchestrator runs elsewhere
        try:
            changes = Changes(client)
            store.record_event(
                PAUSED,
                "steward",
                None,
                {"reason": reason, "files": ["a.py", "b.py"], "checkout": str(repo)},
            )
            changed = await changes.carrying(PAUSED, None)
            assert changed["landingPaused"]["reason"] == reason
            assert changed["landingPaused"]["files"] == ["a.py", "b.py"]
            status = await request(client, "stoneforge/status")
            assert status["landingPaused"]["checkout"] == str(repo)
            assert status["landingPaused"]["files"] == ["a.py", "b.py"]
            store.record_event(RESUMED, "steward", None, {"checkout": str(repo)})
            changed = await changes.carrying(RESUMED, None)
            assert changed["landingPaused"] is None
            assert (await request(client, "stoneforge/status"))["landingPaused"] is None
            # Other changes say nothing about the pause (the key is absent, not null).
            since = changes.mark()
            unrelated = await request(client, "stoneforge/createTask", {"title": "Unrelated"})
            changed = await changes.carrying("task.created", unrelated["id"], since=since)
            assert "landingPaused" not in changed
        finally:
            store.release_lease(LEASE_NAME, "other-process")
            store.close()


async def test_server_outside_a_repository_explains(tmp_path: Path) -> None:
    plain_dir = tmp_path / "not-a-repo"
    plain_dir.mkdir()
    async with lsp_session(plain_dir, init=False) as client:
        with pytest.raises(JsonRpcException) as info:
            await request(client, "stoneforge/listTasks", {})
        assert "not inside a git repository" in str(info.value)


async def test_reviews_reach_the_editor_with_the_merge_request(repo: Path) -> None:
    """A review recorded by the orchestrator (another process) is in `stoneforge/changed` and in
    the merge request the editor asks for; one that leaves the MR to a person pops up with why."""
    async with lsp_session(repo) as client:
        task = await request(client, "stoneforge/createTask", {"title": "Reviewed"})
        with Store(repo / ".stoneforge" / "state.db", actor="orchestrator") as store:
            attempt = store.dispatch_task(task["id"]).dispatches
            mr = store.complete_task(
                task["id"], attempt=attempt, branch="sf/x", head_commit="abc", summary="s",
                review=True,
            )  # fmt: skip
            changes = Changes(client)
            with store.transaction():
                store.add_review(
                    mr.id,
                    ReviewVerdict.REQUEST_CHANGES,
                    "one bug",
                    [ReviewComment(path="app.py", line=3, body="off by one")],
                    session_id="s9",
                    head_commit="abc",
                )
                store.transition_merge_request(
                    mr.id, MrEvent.AWAIT_APPROVAL, reason="the review asked for changes twice"
                )
        await changes.carrying("mr.reviewed", mr.id)
        wanted = (
            f"merge request {mr.id} waits for your decision: the review asked for changes twice"
        )
        for _ in range(100):  # pytest-lsp keeps window/showMessage in client.messages
            if any(wanted in m.message for m in client.messages):
                break
            await asyncio.sleep(0.1)
        assert any(wanted in m.message for m in client.messages), client.messages
        [listed] = (await request(client, "stoneforge/mergeRequests"))["mergeRequests"]
        assert listed["status"] == "awaiting_approval"
        [review] = listed["reviews"]
        assert review["verdict"] == "request_changes" and review["round"] == 1
        assert review["comments"] == [{"path": "app.py", "line": 3, "body": "off by one"}]
        assert review["sessionId"] == "s9" and review["headCommit"] == "abc"


async def test_commit_diff_shows_what_one_commit_changed(repo: Path) -> None:
    """A link to a commit in the editor's documents opens this: the commit against its parent."""
    env = {**os.environ, **GIT_ENV}
    (repo / "README.md").write_text("# demo\nmore\n")
    (repo / "new.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "Add new.py"], cwd=repo, check=True, env=env)
    head, initial = subprocess.run(
        ["git", "rev-parse", "HEAD", "HEAD~1"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.split()
    async with lsp_session(repo) as client:
        diff = await request(client, "stoneforge/commitDiff", {"commit": head[:10]})
        first = await request(client, "stoneforge/commitDiff", {"commit": initial})
    assert (diff["commit"], diff["head"], diff["subject"]) == (head, head, "Add new.py")
    assert diff["files"] == [
        {"path": "README.md", "status": "M", "original": "# demo\n", "modified": "# demo\nmore\n"},
        {"path": "new.py", "status": "A", "original": None, "modified": "x = 1\n"},
    ]
    # The repository's first commit has no parent: everything in it is added.
    assert [(f["path"], f["status"], f["original"]) for f in first["files"]] == [
        ("README.md", "A", None)
    ]
