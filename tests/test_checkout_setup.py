"""A team's repository needs set-up in a fresh checkout: `worktree.copy`, `worktree.setup` and
`SF_TASK_SLOT`, for task checkouts and for the steward's check checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_helpers import StewardRig, git
from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.orchestrator.worker import SlotState, WorkerRun
from test_merge_safety import ShellProvider

pytestmark = [pytest.mark.timeout(120)]


def worker(rig: StewardRig, script: str, slot_index: int = 0) -> WorkerRun:
    task = rig.store.dispatch_task(rig.store.create_task("Use the set-up").id)
    return WorkerRun(
        root=rig.root,
        config=rig.config,
        store=rig.store,
        provider=ShellProvider(script),  # type: ignore[arg-type]
        task=task,
        target="main",
        agent_env={},
        slot=SlotState(task.id, task.title),
        slot_index=slot_index,
    )


async def test_the_agent_s_first_command_sees_the_copied_files_and_the_set_up(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    (rig.root / ".env").write_text("API_URL=http://localhost\n")  # untracked, as teams keep it
    (rig.root / "config").mkdir()
    (rig.root / "config" / "local.toml").write_text("debug = true\n")
    rig.config.worktree.copyFiles = [".env", "config/*.toml"]
    rig.config.worktree.setup = ["mkdir -p .venv && echo installed > .venv/marker"]
    run = worker(
        rig,
        "{ cat .env config/local.toml .venv/marker; echo slot=$SF_TASK_SLOT; } > seen.txt",
        slot_index=2,
    )
    result = await run.run()
    assert result.status == TaskStatus.REVIEW, rig.store.get_task(run.task.id).note
    branch = rig.store.get_task(run.task.id).branch or ""
    seen = git(rig.root, "show", f"{branch}:seen.txt")
    assert seen.splitlines() == [
        "API_URL=http://localhost",
        "debug = true",
        "installed",
        "slot=2",
    ]
    # What was copied or made by the set-up is not the agent's work: never committed.
    assert git(rig.root, "ls-tree", "-r", "--name-only", branch).split() == [
        "README.md",
        "seen.txt",
    ]
    rig.close()


async def test_a_failing_set_up_is_a_failed_attempt_with_its_output_and_no_session(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    rig.config.worktree.setup = ["echo 'npm ERR! missing lockfile' >&2; exit 3"]
    run = worker(rig, "echo never > ran.txt")
    result = await run.run()
    task = rig.store.get_task(run.task.id)
    assert result.status == TaskStatus.OPEN and task.status == TaskStatus.OPEN
    assert "worktree.setup command" in (task.note or "")
    assert "npm ERR! missing lockfile" in (task.note or "")
    assert rig.store.list_sessions(task_id=task.id) == []
    rig.close()


@pytest.mark.parametrize("setup_checks", [True, False])
async def test_the_check_checkout_gets_the_same_set_up_unless_turned_off(
    tmp_path: Path, setup_checks: bool
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["test -f .env && test -f built.txt"])
    (rig.root / ".env").write_text("SECRETLESS=1\n")
    rig.config.worktree.copyFiles = [".env"]
    rig.config.worktree.setup = ["touch built.txt"]
    rig.config.worktree.setupChecks = setup_checks
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    await rig.drain()
    expected = MergeStatus.MERGED if setup_checks else MergeStatus.TEST_FAILED
    assert rig.store.get_merge_request(mr.id).status == expected
    rig.close()
