"""`stoneforge/serve` in the language server: a real scripted session to merged, with progress."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from conftest import GIT_ENV, git, write_config
from lsp_helpers import lsp_session, request
from serve_helpers import FAKE_KEY, commit_steps
from stoneforge.demo import FakeModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def server_env(model: FakeModel) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **model.env(FAKE_KEY)}


async def wait_for_status(client, task_id: str, status: str, timeout: float = 90) -> dict:
    async def poll() -> dict:
        while True:
            task = (await request(client, "stoneforge/listTasks"))["tasks"]
            found = next(t for t in task if t["id"] == task_id)
            if found["status"] == status:
                return found
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(poll(), timeout)


def _configure(repo: Path, steward: str = "") -> None:
    (repo / ".stoneforge").mkdir(exist_ok=True)
    write_config(
        repo,
        "orchestrator:\n  retryBackoffS: 0.2\n"
        + steward
        + "merge:\n  checks: ['test -f feature.py']\n",
    )


async def test_serve_runs_a_session_to_merged_with_progress(
    repo: Path, fake_model: FakeModel
) -> None:
    _configure(repo)
    async with lsp_session(repo, env=server_env(fake_model)) as client:
        task = await request(client, "stoneforge/createTask", {"title": "Add feature"})
        fake_model.add_script(
            commit_steps("feature.py", "FEATURE = True\n", "Add feature"),
            marker=f"Stoneforge task {task['id']}:",
        )
        assert await request(client, "stoneforge/serve", {"maxConcurrent": 2}) == {"serving": True}
        status = await request(client, "stoneforge/status")
        assert status["serving"] is True and status["maxConcurrent"] == 2
        assert status["orchestrator"]["pid"] > 0
        with pytest.raises(JsonRpcException, match="already running"):
            await request(client, "stoneforge/serve", {})
        merged = await wait_for_status(client, task["id"], "merged")
        assert merged["mergeRequest"]["checks"][0]["command"] == "test -f feature.py"
        assert merged["mergeRequest"]["checks"][0]["exitCode"] == 0
        assert await request(client, "stoneforge/stop") == {"serving": False}
        assert (await request(client, "stoneforge/status"))["orchestrator"] is None
        reports = [r for values in client.progress_reports.values() for r in values]
        kinds = [r.kind for r in reports]
        assert "begin" in kinds and "end" in kinds
        messages = [getattr(r, "message", "") or "" for r in reports]
        assert any("agents busy" in m for m in messages)
        assert any("checking merge request" in m for m in messages)
    assert git(repo, "show", "main:feature.py") == "FEATURE = True"


async def test_approve_merge_from_the_editor(repo: Path, fake_model: FakeModel) -> None:
    _configure(repo, "agents:\n  steward:\n    autoMerge: false\n")
    async with lsp_session(repo, env=server_env(fake_model)) as client:
        task = await request(client, "stoneforge/createTask", {"title": "Add feature"})
        fake_model.add_script(
            commit_steps("feature.py", "FEATURE = 1\n", "Add feature"),
            marker=f"Stoneforge task {task['id']}:",
        )
        await request(client, "stoneforge/serve", {})
        await wait_for_status(client, task["id"], "review")

        async def awaiting() -> dict:
            while True:
                mrs = (
                    await request(
                        client, "stoneforge/mergeRequests", {"status": "awaiting_approval"}
                    )
                )["mergeRequests"]
                if mrs:
                    return mrs[0]
                await asyncio.sleep(0.2)

        mr = await asyncio.wait_for(awaiting(), 90)
        diff = await request(client, "stoneforge/mergeDiff", {"id": mr["id"]})
        assert diff["files"] == [
            {"path": "feature.py", "status": "A", "original": None, "modified": "FEATURE = 1\n"}
        ]
        for _ in range(50):  # the pop-up follows the store change through the event log
            if any("waits for your approval" in m.message for m in client.messages):
                break
            await asyncio.sleep(0.1)
        assert any("waits for your approval" in m.message for m in client.messages)
        approved = await request(client, "stoneforge/approveMerge", {"id": mr["id"]})
        assert approved["status"] == "merged"
        await wait_for_status(client, task["id"], "merged")
        await request(client, "stoneforge/stop")
    assert git(repo, "show", "main:feature.py") == "FEATURE = 1"
