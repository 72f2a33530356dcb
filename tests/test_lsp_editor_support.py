"""What editors rely on beyond the plain requests: a repository that does not use Stoneforge yet is
left untouched until the user asks (`stoneforge/init`), params as real clients send them, a merged
merge request's diff after its branch is gone, and sessions whose process died."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from conftest import GIT_ENV, git
from lsp_helpers import Changes, lsp_session, plain, request
from stoneforge.service import Service

SEED = Path(__file__).parent / "e2e" / "seed_workspace.py"


def _seed(root: Path) -> dict[str, str]:
    sys.path.insert(0, str(SEED.parent))
    try:
        import seed_workspace  # noqa: PLC0415 - a script beside the tests, not a package
    finally:
        sys.path.remove(str(SEED.parent))
    return seed_workspace.seed(root)


async def test_a_plain_repository_is_left_untouched_until_init(repo: Path) -> None:
    before = git(repo, "status", "--porcelain", "--ignored")
    async with lsp_session(repo, init=False) as client:
        state = await request(client, "stoneforge/workspace")
        assert state["initialized"] is False and state["repository"] == str(repo)
        assert "sf init" in state["problem"]
        with pytest.raises(JsonRpcException, match="does not use Stoneforge yet"):
            await request(client, "stoneforge/listTasks")
        # Opening the folder wrote nothing: no .stoneforge/, no change in Source Control.
        assert not (repo / ".stoneforge").exists()
        assert git(repo, "status", "--porcelain", "--ignored") == before

        done = await request(client, "stoneforge/init")
        assert done["repository"] == str(repo)
        assert ".stoneforge/config.yaml" in done["created"]
        assert (await request(client, "stoneforge/workspace"))["initialized"] is True
        # Bound and watching: requests work and the store's changes reach the client.
        changes = Changes(client)
        task = await request(client, "stoneforge/createTask", {"title": "First"})
        await changes.carrying("task.created", task["id"])
        assert (await request(client, "stoneforge/init"))["created"] == []
    assert task["id"] == "t1"


async def test_a_repository_with_a_committed_config_opens_without_init(repo: Path) -> None:
    """A clone of a project that uses Stoneforge: its config is there, its state db is not."""
    Service.init(repo)[0].close()
    (repo / ".stoneforge" / "state.db").unlink()
    async with lsp_session(repo, init=False) as client:
        assert (await request(client, "stoneforge/workspace"))["initialized"] is True
        assert (await request(client, "stoneforge/listTasks"))["tasks"] == []


async def test_empty_params_sent_as_an_array_mean_no_params(repo: Path) -> None:
    """Neovim's client encodes an empty Lua table `{}` as `[]`; a non-empty array is refused."""
    async with lsp_session(repo) as client:
        for method in ("status", "taskTree", "listTasks", "handoffs", "workspace"):
            as_array = await request(client, f"stoneforge/{method}", [])
            assert as_array == await request(client, f"stoneforge/{method}", {}), method
        with pytest.raises(JsonRpcException, match="expected an object, got list") as info:
            await request(client, "stoneforge/status", ["x"])
        assert info.value.code == -32602
        with pytest.raises(JsonRpcException, match="title: Field required"):
            await request(client, "stoneforge/createTask", [])


def test_a_merged_merge_requests_diff_comes_from_its_recorded_commits(tmp_path: Path) -> None:
    seeded = _seed(tmp_path / "repo")
    root = Path(seeded["root"])
    with Service.open(root) as service:
        before = service.merge_diff(seeded["mrId"])
        assert [(f["path"], f["status"]) for f in before["files"]] == [
            ("calc.py", "M"),
            ("test_calc.py", "A"),
        ]
        assert service.approve_merge(seeded["mrId"]).status == "merged"
        # Landing removed the task's checkout and deleted its branch.
        assert not Path(seeded["worktree"]).exists()
        assert git(root, "branch", "--list", seeded["branch"]) == ""
        after = service.merge_diff(seeded["mrId"])
    assert after["files"] == before["files"]
    assert after["head"] == before["head"]


def test_an_open_merge_request_whose_branch_is_gone_diffs_its_recorded_head(
    tmp_path: Path,
) -> None:
    seeded = _seed(tmp_path / "repo")
    root = Path(seeded["root"])
    with Service.open(root) as service:
        before = service.merge_diff(seeded["mrId"])
        git(root, "worktree", "remove", "--force", seeded["worktree"])
        git(root, "branch", "-D", seeded["branch"])
        assert service.merge_diff(seeded["mrId"]) == before


def _start_session_in(root: Path, *, then: str) -> subprocess.Popen[str]:
    """Another stoneforge process starts a worker session for t1, then runs ``then``."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from stoneforge.models import SessionRole
        from stoneforge.service import Service
        service = Service.open(Path({str(root)!r}))
        print(service.store.start_session("t1", SessionRole.WORKER).id, flush=True)
        {then}
        """
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **GIT_ENV},
    )


async def test_sessions_of_a_dead_process_are_interrupted_not_running(repo: Path) -> None:
    async with lsp_session(repo) as client:
        await request(client, "stoneforge/createTask", {"title": "Work"})
        dead = _start_session_in(repo, then="sys.exit(0)")
        dead_id = dead.stdout.readline().strip()  # type: ignore[union-attr]
        dead.wait(30)
        live = _start_session_in(repo, then="time.sleep(60)")
        try:
            live_id = live.stdout.readline().strip()  # type: ignore[union-attr]
            status = plain(await request(client, "stoneforge/status"))
            assert [a["sessionId"] for a in status["agents"]] == [live_id]
            assert [a["sessionId"] for a in status["interruptedSessions"]] == [dead_id]
        finally:
            live.kill()
            live.wait(30)
        status = await request(client, "stoneforge/status")
        assert status["agents"] == [] and len(status["interruptedSessions"]) == 2


def test_a_killed_orchestrators_lease_is_not_shown_as_running(repo: Path) -> None:
    Service.init(repo)[0].close()
    code = (
        "from stoneforge.service import Service; "
        "from stoneforge.orchestrator.daemon import LEASE_NAME; "
        f"from pathlib import Path; Service.open(Path({str(repo)!r})).store.acquire_lease(LEASE_NAME, 'gone', 20.0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **GIT_ENV})
    with Service.open(repo) as service:
        assert service.store.lease_holder("orchestrator") is not None  # the row is still there
        assert service.status().orchestrator is None
