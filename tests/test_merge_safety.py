"""Merge safety: the reproduced ways to break "main holds only checked work, nothing is lost".

Each test is one reproduction from the merge-safety issue (scripts in shared/repros), run against a
real repository and a real store; on the code before the lifecycle module each of them failed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from steward_helpers import ScriptedSession, StewardRig, git
from stoneforge.agents import Result, SessionSpec, SessionStarted
from stoneforge.agents.env import default_config_dir
from stoneforge.errors import (
    InvalidInputError,
    InvalidTransitionError,
    LeaseHeldError,
    LeaseLostError,
    StaleAttemptError,
)
from stoneforge.git.snapshot import list_snapshots
from stoneforge.git.worktrees import ensure_worktree
from stoneforge.lifecycle import MrEvent, TaskEvent, transition_table_markdown
from stoneforge.models import CheckRun, MergeStatus, SessionRole, SessionStatus, TaskStatus
from stoneforge.orchestrator import worker_endings as worker_module
from stoneforge.orchestrator.recovery import recover_orphans
from stoneforge.orchestrator.worker import SlotState, WorkerRun
from stoneforge.service import Service
from stoneforge.store import Store

pytestmark = [pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent


# -- a scripted agent: runs shell commands in its checkout, then ends well -------------------


class _ShellSession(ScriptedSession):
    def __init__(self, spec: SessionSpec, script: str) -> None:
        self.spec = spec
        self.script = script

    provider_session_id = "scripted"

    async def events(self) -> AsyncIterator[object]:
        yield SessionStarted(provider_session_id="scripted")
        env = {**os.environ, **self.spec.env}  # as the CLI's Bash tool runs with its env
        subprocess.run(["bash", "-c", self.script], cwd=self.spec.cwd, env=env, check=True)
        yield Result(provider_session_id="scripted", is_error=False, subtype="success")


class ShellProvider:
    name = "scripted"

    def __init__(self, script: str) -> None:
        self.script = script

    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[_ShellSession]:
        yield _ShellSession(spec, self.script)


def worker_for(rig: StewardRig, title: str, script: str) -> WorkerRun:
    task = rig.store.create_task(title)
    task = rig.store.dispatch_task(task.id)
    return WorkerRun(
        root=rig.root,
        config=rig.config,
        store=rig.store,
        provider=ShellProvider(script),  # type: ignore[arg-type]
        task=task,
        target="main",
        agent_env={},
        slot=SlotState(task.id, task.title),
    )


def files_on(root: Path, ref: str = "main") -> list[str]:
    return git(root, "ls-tree", "--name-only", ref).split()


# -- 1. completion requires work on the task branch --------------------------------------------


@pytest.mark.parametrize(
    "switch",
    ["git checkout -q -b feature/parser", "git checkout -q --detach"],
    ids=["branch", "detached"],
)
async def test_work_committed_off_the_task_branch_is_a_failed_attempt_and_kept(
    tmp_path: Path, switch: str
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    before = rig.tip()
    run = worker_for(
        rig,
        "Add a parser",
        f"{switch} && echo 'def parse(): ...' > parser.py && "
        "git add -A && git commit -q -m 'add parser'",
    )
    result = await run.run()
    task = rig.store.get_task(run.task.id)
    assert result.status == TaskStatus.OPEN and task.status == TaskStatus.OPEN
    assert "instead of the task branch" in (task.note or "")
    assert rig.store.list_merge_requests() == []
    # The commit is kept in a recovery ref, and the checkout is back on its branch.
    (saved,) = list_snapshots(rig.root, task.id)
    assert "parser.py" in files_on(rig.root, saved.ref)
    assert git(Path(task.worktree or ""), "symbolic-ref", "--short", "HEAD") == task.branch
    await rig.drain()
    assert rig.tip() == before and rig.store.get_task(task.id).status == TaskStatus.OPEN
    rig.close()


async def test_a_branch_already_on_the_target_is_merged_only_with_its_recorded_commits(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    # An MR whose branch was rewound to main: nothing of the task's recorded commit is there.
    task, mr = rig.submit("Rewound", {"lost.txt": "work\n"})
    recorded = rig.tip(mr.branch)
    git(rig.root, "update-ref", f"refs/heads/{mr.branch}", rig.tip())
    # An MR whose commits someone already put on main by hand: merged, nothing to check.
    done, done_mr = rig.submit("Landed by hand", {"hand.txt": "1\n"})
    git(rig.root, "merge", "-q", "--ff-only", done_mr.branch)
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.REJECTED
    assert rig.store.get_task(task.id).status == TaskStatus.OPEN
    assert rig.store.get_merge_request(mr.id).head_commit == recorded
    assert rig.store.get_merge_request(done_mr.id).status == MergeStatus.MERGED
    assert rig.store.get_task(done.id).status == TaskStatus.MERGED
    rig.close()


# -- 3. a cancel during completion wins --------------------------------------------------------


async def test_a_cancel_while_the_worker_completes_is_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    before = rig.tip()
    run = worker_for(rig, "Do a thing", "echo 'agent work' > work.txt")
    real_commit_leftovers = worker_module.commit_leftovers

    def commit_leftovers_while_cancelled(repo: Path, path: Path, message: str) -> str | None:
        rig.store.cancel_task(run.task.id)  # the user presses Cancel right now
        return real_commit_leftovers(repo, path, message)

    monkeypatch.setattr(worker_module, "commit_leftovers", commit_leftovers_while_cancelled)
    result = await run.run()
    assert result.status == TaskStatus.CANCELLED
    assert rig.store.get_task(run.task.id).status == TaskStatus.CANCELLED
    assert rig.store.list_merge_requests() == []
    await rig.drain()
    assert rig.tip() == before and "work.txt" not in files_on(rig.root)
    # The work itself is not lost: it is committed on the task branch.
    assert "work.txt" in files_on(rig.root, rig.store.get_task(run.task.id).branch or "")
    rig.close()


async def test_a_cancel_while_a_check_runs_keeps_the_work_off_main(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["sleep 2"])
    task, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    before = rig.tip()
    steward = rig.make_steward()
    async with anyio.create_task_group() as group:
        group.start_soon(steward.round)
        await until_testing(rig, mr.id)
        rig.store.cancel_task(task.id)
    assert rig.tip() == before
    assert rig.store.get_task(task.id).status == TaskStatus.CANCELLED
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.REJECTED
    rig.close()


# -- 4. approving a merge request of an earlier attempt ---------------------------------------


async def test_approving_the_mr_of_a_cancelled_and_retried_task_is_refused(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"], auto_merge=False)
    task, mr = rig.submit("Feature", {"f.txt": "f\n"})
    wt = ensure_worktree(
        rig.root, rig.root / ".stoneforge/worktrees/t1", mr.branch, start_point="main"
    )
    rig.store.update_task(task.id, worktree=str(wt.path))
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.AWAITING_APPROVAL
    service = Service(rig.root, rig.config, rig.store)
    service.cancel_task(task.id)
    service.retry_task(task.id)
    rig.store.dispatch_task(task.id)  # a new attempt is running in the worktree
    (wt.path / "in_progress.txt").write_text("the new attempt's agent writes here\n")
    before = rig.tip()
    with pytest.raises(InvalidTransitionError, match="earlier attempt"):
        service.approve_merge(mr.id)
    assert rig.store.get_task(task.id).status == TaskStatus.IN_PROGRESS
    assert wt.path.is_dir() and rig.tip() == before and "f.txt" not in files_on(rig.root)
    rig.close()


# -- 2. fencing: a steward that lost the lease lands nothing ----------------------------------


async def until_testing(rig: StewardRig, mr_id: str) -> None:
    """Wait (bounded) until the steward has started checking ``mr_id``."""
    with anyio.fail_after(30):
        while rig.store.get_merge_request(mr_id).status != MergeStatus.TESTING:
            await anyio.sleep(0.02)


def _pretend_holder_died(store_path: Path) -> None:
    """The lease's holder looks dead (as after a crash) so that another process may take over."""
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE leases SET holder_pid = 999999999")


async def test_a_steward_that_lost_the_lease_during_its_check_lands_nothing(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["sleep 2"])
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    before = rig.tip()
    old_fence = rig.store.acquire_lease("orchestrator", "old", ttl_s=20)
    old = rig.make_steward(fence=old_fence)
    refused: list[Exception] = []

    async def old_round() -> None:
        try:
            await old.round()
        except LeaseLostError as exc:
            refused.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(old_round)
        await until_testing(rig, mr.id)  # the old steward is checking its candidate
        _pretend_holder_died(rig.store.path)
        new_fence = rig.store.acquire_lease("orchestrator", "new", ttl_s=20)
        assert new_fence.epoch > old_fence.epoch
    assert refused, "the old steward went on as if it still held the lease"
    assert rig.tip() == before
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.TESTING
    # The new holder's steward finds the interrupted check and lands it, checked.
    new = rig.make_steward(fence=new_fence)
    while await new.round():
        pass
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.MERGED
    assert "feature.txt" in files_on(rig.root)
    rig.close()


def test_a_live_holder_on_this_host_is_not_taken_over_by_a_stale_heartbeat(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.acquire_lease("orchestrator", "first", ttl_s=20)
    with sqlite3.connect(store.path) as db:  # a suspended laptop: the heartbeat is an hour old
        db.execute("UPDATE leases SET heartbeat_at = '2000-01-01T00:00:00+00:00'")
    with pytest.raises(LeaseHeldError, match=f"pid {os.getpid()}"):
        store.acquire_lease("orchestrator", "second", ttl_s=20)
    store.close()


def test_fenced_writes_fail_once_the_lease_is_lost(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    task = store.create_task("x")
    fence = store.acquire_lease("orchestrator", "first", ttl_s=20)
    store.dispatch_task(task.id, fence=fence)
    _pretend_holder_died(store.path)
    store.acquire_lease("orchestrator", "second", ttl_s=20)
    with pytest.raises(LeaseLostError):
        store.transition_task(task.id, TaskEvent.REQUEUE, fence=fence)
    assert store.get_task(task.id).status == TaskStatus.IN_PROGRESS
    store.close()


# -- the lifecycle tables ----------------------------------------------------------------------


def test_state_moves_only_through_the_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    task = store.create_task("x")
    with pytest.raises(InvalidInputError, match="status"):
        store.update_task(task.id, status=TaskStatus.MERGED)
    with pytest.raises(InvalidTransitionError, match="'land' needs it to be review"):
        store.transition_task(task.id, TaskEvent.LAND)
    attempt = store.dispatch_task(task.id).dispatches
    mr = store.complete_task(
        task.id, attempt=attempt, branch="b", head_commit="0" * 40, summary="s"
    )
    store.cancel_task(task.id)
    store.retry_task(task.id)
    store.dispatch_task(task.id)
    with pytest.raises(StaleAttemptError):  # the cancelled attempt's MR cannot land its task
        store.transition_task(task.id, TaskEvent.FAIL, attempt=attempt)
    store.transition_merge_request(mr.id, MrEvent.REJECT, reason="superseded")
    with pytest.raises(InvalidTransitionError):  # a merged or rejected MR never goes back
        store.transition_merge_request(mr.id, MrEvent.REQUEUE)
    assert store.get_merge_request(mr.id).status == MergeStatus.REJECTED
    store.close()


def test_the_architecture_doc_holds_the_tables_of_the_code() -> None:
    assert transition_table_markdown() in (ROOT / "docs" / "architecture.md").read_text()


# -- recovery ----------------------------------------------------------------------------------


def _sleeper(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Stands in for a live Claude Code CLI (recovery only kills what looks like one)."""
    proc = subprocess.Popen(["bash", "-c", "exec -a claude sleep 30"], env=env)
    time.sleep(0.2)
    return proc


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_recovery_leaves_sessions_of_its_own_process_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    session = store.start_session(None, SessionRole.DIRECTOR)  # a director in this process
    cli = _sleeper()
    try:
        store.update_session(session.id, pid=cli.pid)
        recover_orphans(store)
        assert cli.poll() is None
        assert store.get_session(session.id).status == SessionStatus.RUNNING
    finally:
        cli.kill()
    store.close()


def test_recovery_after_an_orchestrator_crash_gives_the_attempt_back_and_finds_the_cli(
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    (root / ".stoneforge").mkdir(parents=True)
    store = Store(root / ".stoneforge" / "state.db")
    task = store.dispatch_task(store.create_task("x").id)
    assert task.attempts == 1
    session = store.start_session(task.id, SessionRole.WORKER)
    with sqlite3.connect(store.path) as db:  # its orchestrator died; the CLI's pid never stored
        db.execute("UPDATE sessions SET owner_pid = ?", (_dead_pid(),))
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(default_config_dir(root, session.id))}
    cli = _sleeper(env)
    try:
        lines = recover_orphans(store)
        cli.wait(timeout=5)
    finally:
        cli.kill()
    assert any(f"process {cli.pid}" in line for line in lines)
    task = store.get_task(task.id)
    assert task.status == TaskStatus.OPEN and task.attempts == 0
    store.close()


async def test_a_landing_interrupted_by_a_crash_is_recorded_with_its_commit_and_checks(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    # The crashed steward had checked the candidate, saved its checks and moved main.
    candidate = git(
        rig.root, "commit-tree", f"{mr.branch}^{{tree}}", "-p", "main", "-p", mr.branch, "-m", "m"
    )
    rig.store.transition_merge_request(mr.id, MrEvent.CHECK, candidate_commit=candidate)
    run = CheckRun(command="true", exit_code=0, duration_s=0.1)
    rig.store.update_merge_request(mr.id, checks=[run])
    git(rig.root, "update-ref", "refs/heads/main", candidate)
    await rig.drain()
    landed = rig.store.get_merge_request(mr.id)
    assert landed.status == MergeStatus.MERGED and landed.merged_commit == candidate
    assert [c.command for c in landed.checks] == ["true"]
    assert rig.steward is not None and rig.steward.check_runs == 0
    rig.close()
