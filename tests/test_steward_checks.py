"""The merge queue's check runs: own checkouts, clean trees, process groups, flakes, crashes.

Real git, real check processes (`bash`, `sleep`), real steward processes killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from steward_helpers import StewardRig, StubProvider, check_tree, first_parents, git
from stoneforge.models import MergeStatus, SessionStatus, TaskStatus
from stoneforge.orchestrator import steward as steward_module
from stoneforge.orchestrator.checks import run_check
from stoneforge.orchestrator.steward import Steward
from stoneforge.service import Service

pytestmark = [pytest.mark.timeout(120)]

SHARED = "line 1\nline 2\nline 3\n"


def status(rig: StewardRig, mr_id: str) -> MergeStatus:
    return rig.store.get_merge_request(mr_id).status


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_dead(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def flaky_events(rig: StewardRig) -> list[dict[str, object]]:
    return [
        {"mr": e.entity_id, **e.data} for e in rig.store.events_since(0) if e.kind == "check.flaky"
    ]


# -- clean trees ---------------------------------------------------------------------------------


async def test_a_check_that_fails_on_a_clean_tree_does_not_pass_its_retry(tmp_path: Path) -> None:
    # The MR's CI script only passes once a failing run has left (ignored) build output behind:
    # red on every fresh machine. A retry in the warm checkout passed it as a "flake".
    rig = StewardRig(tmp_path / "repo", checks=["bash ./ci.sh"], files={".gitignore": "build/\n"})
    before = rig.tip()
    _, mr = rig.submit(
        "New CI",
        {
            "ci.sh": "mkdir -p build\nif [ -f build/generated ]; then exit 0; fi\n"
            "touch build/generated\necho 'build/generated missing'; exit 1\n"
        },
    )
    await rig.drain()
    failed = rig.store.get_merge_request(mr.id)
    assert failed.status == MergeStatus.TEST_FAILED
    assert [run.exit_code for run in failed.checks] == [1, 1]
    assert rig.tip() == before, "a check red on a clean tree landed"
    assert flaky_events(rig) == []
    rig.close()


async def test_ignored_build_output_does_not_carry_over_to_the_next_candidate(
    tmp_path: Path,
) -> None:
    # The check fails when it finds a stamp a previous run left in the (ignored) build dir.
    ci = "if [ -e build/stamp ]; then echo 'stale build output'; exit 1; fi\n"
    ci += "mkdir -p build && touch build/stamp\n"
    rig = StewardRig(
        tmp_path / "repo",
        checks=["bash ./ci.sh"],
        batch_size=1,
        files={".gitignore": "build/\n", "ci.sh": ci},
    )
    _, mr1 = rig.submit("One", {"one.txt": "1\n"})
    _, mr2 = rig.submit("Two", {"two.txt": "2\n"})
    await rig.drain()
    assert [status(rig, m.id) for m in (mr1, mr2)] == [MergeStatus.MERGED] * 2
    assert flaky_events(rig) == []
    rig.close()


async def test_two_stewards_use_their_own_checkouts_and_land_nothing_red(tmp_path: Path) -> None:
    # After a lease take-over the old holder may still be finishing a round: it must not check
    # (and land) whatever the new one checked out in a shared directory.
    # One batch at a time: with look-ahead the old steward's round could take the second MR
    # into its own chain before the new one looks, leaving the new one nothing to check here.
    rig = StewardRig(tmp_path / "repo", checks=[], parallel_checks=1)
    started = tmp_path / "check-started"
    rig.config.merge.checks = [f"touch {started}; sleep 2; bash {rig.script} {rig.log}"]
    rig.submit("Uses x", {"needs_x": "needs x\n"})  # red alone

    def steward() -> Steward:
        return Steward(
            root=rig.root,
            config=rig.config,
            store=rig.store,
            provider=rig.provider,  # type: ignore[arg-type]
            target="main",
            agent_env={},
            note=rig.notes.append,
            on_landed=lambda: None,
        )

    old, new = steward(), steward()
    async with anyio.create_task_group() as group:
        group.start_soon(old.round)  # checks "uses x" alone
        with anyio.fail_after(60):  # its check has started (however loaded the machine)
            while not started.exists():
                await anyio.sleep(0.05)
        rig.submit("Provides x", {"provides_x": "x\n"})
        group.start_soon(new.round)  # the batch of both
    landed = first_parents(rig.root)
    assert landed, rig.notes
    for commit in landed:
        subject = git(rig.root, "log", "-1", "--format=%s", commit)
        assert check_tree(rig.root, commit, rig.script, tmp_path / "scratch"), f"{subject} is red"
    checkouts = {old._worktree_path(), new._worktree_path()}
    assert len(checkouts) == 2 and all(path.is_dir() for path in checkouts)
    rig.close()


# -- process groups, stop, leftovers -------------------------------------------------------------


def slow_check(tmp_path: Path) -> tuple[str, Path]:
    pidfile = tmp_path / "check.pid"
    return f"sleep 30 & echo $! > {pidfile}; wait", pidfile


async def wait_for(path: Path, within_s: float = 20.0) -> None:
    with anyio.fail_after(within_s):
        while not path.exists() or not path.read_text().strip():
            await anyio.sleep(0.05)


async def test_a_background_process_a_check_left_is_killed_without_waiting(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    started = time.monotonic()
    run = await run_check(f"echo tested; sleep 30 & echo $! > {pidfile}; exit 0", tmp_path, 20.0)
    assert time.monotonic() - started < 5, "the check waited for what it left running"
    assert run.exit_code == 0 and run.output_tail.startswith("tested\n")
    assert "a process the check left running was killed" in run.output_tail
    assert wait_dead(int(pidfile.read_text()))


async def test_cancelling_the_steward_kills_its_check_at_once(tmp_path: Path) -> None:
    command, pidfile = slow_check(tmp_path)
    rig = StewardRig(tmp_path / "repo", checks=[command])
    _, mr = rig.submit("Feature", {"a.txt": "a\n"})
    steward = rig.make_steward()
    async with anyio.create_task_group() as group:
        group.start_soon(steward.run)
        await wait_for(pidfile)
        run_files = list((rig.root / ".stoneforge" / "run").glob("check-*.json"))
        records = [json.loads(path.read_text()) for path in run_files]
        candidate = rig.store.get_merge_request(mr.id).candidate_commit
        started = time.monotonic()
        group.cancel_scope.cancel()  # a second Ctrl-C, the LSP shutdown, a lost lease
    assert time.monotonic() - started < 2.0, "cancelling waited for the check"
    assert wait_dead(int(pidfile.read_text())), "the check's process outlived the steward"
    # While it ran, its run file named it: steward, process group (its own), command, commit.
    (recorded,) = records
    assert recorded["steward_id"] == steward.id and run_files[0].name == f"check-{steward.id}.json"
    assert (recorded["command"], recorded["commit"]) == (command, candidate)
    assert os.getpgid(0) != recorded["pgid"]
    assert not run_files[0].exists()
    assert status(rig, mr.id) != MergeStatus.MERGED
    rig.close()


async def test_stop_kills_a_running_check_and_ends_the_run(tmp_path: Path) -> None:
    command, pidfile = slow_check(tmp_path)
    rig = StewardRig(tmp_path / "repo", checks=[command])
    _, mr = rig.submit("Feature", {"a.txt": "a\n"})
    steward = rig.make_steward()
    ended = anyio.Event()

    async def run() -> None:
        await steward.run()
        ended.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await wait_for(pidfile)
        started = time.monotonic()
        await steward.stop()
        with anyio.fail_after(10):  # run() returns by itself: nothing cancels it here
            await ended.wait()
    assert time.monotonic() - started < 2.0, "stop waited for the whole check"
    assert wait_dead(int(pidfile.read_text()))
    assert steward.check_runs == 0 and status(rig, mr.id) != MergeStatus.MERGED
    assert not (rig.root / ".stoneforge" / "run" / f"steward-{steward.id}.json").exists()
    rig.close()


DEAD_STEWARD = """
import sys
import anyio
from pathlib import Path
from stoneforge.config import StoneforgeConfig
from stoneforge.orchestrator.steward import Steward
from stoneforge.store import Store

root = Path(sys.argv[1])
config = StoneforgeConfig.model_validate_json(sys.argv[2])


async def main() -> None:
    steward = Steward(
        root=root, config=config, store=Store(root / ".stoneforge" / "state.db"), provider=None,
        target="main", agent_env={}, note=print, on_landed=lambda: None, steward_id="dead0001",
    )
    await steward.round()


anyio.run(main)
"""


async def kill_a_steward_mid_check(rig: StewardRig, tmp_path: Path) -> int:
    """A steward process (id dead0001) killed with SIGKILL while its check runs; the check's
    pid, still running."""
    command, pidfile = slow_check(tmp_path)
    config = rig.config.model_copy(deep=True)
    config.merge.checks = [command]
    child = subprocess.Popen(
        [sys.executable, "-c", DEAD_STEWARD, str(rig.root), config.model_dump_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    run_file = rig.root / ".stoneforge" / "run" / "check-dead0001.json"
    try:
        # The check writes its pid as it starts; the steward records it just after spawning.
        await wait_for(pidfile)
        await wait_for(run_file)
    finally:
        child.send_signal(signal.SIGKILL)  # the orchestrator dies with its check running
        child.communicate()
    leftover = int(pidfile.read_text())
    assert alive(leftover), "the check should outlive its steward (its own session)"
    assert run_file.exists()
    assert (rig.root / ".stoneforge" / "worktrees" / "_steward-dead0001").is_dir()
    return leftover


async def test_a_dead_stewards_check_is_killed_and_its_checkout_removed(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    _, mr = rig.submit("Feature", {"a.txt": "a\n"})
    worktrees = rig.root / ".stoneforge" / "worktrees"
    # The checkout every steward used to share, left by an older version.
    git(rig.root, "worktree", "add", "-q", "--detach", str(worktrees / "_steward"), "main")
    leftover = await kill_a_steward_mid_check(rig, tmp_path)

    await rig.drain()  # a new steward starts
    assert wait_dead(leftover, 1.0), "the dead steward's check is still running"
    assert status(rig, mr.id) == MergeStatus.MERGED
    assert rig.steward is not None
    names = sorted(p.name for p in worktrees.iterdir())
    assert names == [f"_steward-{rig.steward.id}"]
    assert "dead0001" not in git(rig.root, "worktree", "list")
    assert not list((rig.root / ".stoneforge" / "run").glob("*dead0001*"))
    assert any("killed a check left running by stopped steward dead0001" in n for n in rig.notes)
    rig.close()


async def test_a_starting_steward_kills_leftovers_before_it_has_work(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    task, _ = rig.submit("Feature", {"a.txt": "a\n"})
    leftover = await kill_a_steward_mid_check(rig, tmp_path)
    rig.store.cancel_task(task.id)  # nothing left to check
    steward = rig.make_steward()
    async with anyio.create_task_group() as group:
        group.start_soon(steward.run)
        with anyio.fail_after(10):
            while alive(leftover):
                await anyio.sleep(0.05)
        await steward.stop()
    assert steward.check_runs == 0
    assert not (rig.root / ".stoneforge" / "worktrees" / "_steward-dead0001").exists()
    rig.close()


async def test_a_live_stewards_checkout_is_left_alone(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    rig.submit("One", {"one.txt": "1\n"})
    first = rig.make_steward()
    await rig.drain()
    kept = first._worktree_path()
    assert kept.is_dir()
    rig.submit("Two", {"two.txt": "2\n"})
    second = rig.make_steward()  # same process: the first may still be finishing a round
    await rig.drain()
    assert kept.is_dir() and second._worktree_path().is_dir()
    rig.close()


# -- flaky checks and quarantine -----------------------------------------------------------------


async def test_flaky_passes_are_recorded_and_reported_after_the_threshold(tmp_path: Path) -> None:
    # Every 2nd run of the check fails spuriously: each MR after the first fails once and passes
    # its retry.
    rig = StewardRig(tmp_path / "repo", batch_size=1, flaky_every=2)
    command = rig.check_command(2)
    mrs = [rig.submit(f"Feature {n}", {f"f{n}.txt": f"{n}\n"})[1] for n in range(3)]
    await rig.drain()
    assert [status(rig, m.id) for m in mrs] == [MergeStatus.MERGED] * 3
    events = flaky_events(rig)
    assert [e["mr"] for e in events] == [mrs[1].id, mrs[2].id]
    assert all(e["command"] == command for e in events)
    assert events[1]["commit"] == rig.store.get_merge_request(mrs[2].id).merged_commit
    service = Service(rig.root, rig.config, rig.store)
    assert service.flaky_checks() == []  # 2 < merge.flakyReportAfter (3)

    _, last = rig.submit("Feature 3", {"f3.txt": "3\n"})
    await rig.drain()
    (flaky,) = service.flaky_checks()
    assert (flaky.command, flaky.count, flaky.last_merge_request) == (command, 3, last.id)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    human = subprocess.run(
        [sys.executable, "-m", "stoneforge", "merge", "list"],
        cwd=rig.root,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "flaky check:" in human and "3 times" in human and rig.script.name in human
    listed = json.loads(
        subprocess.run(
            [sys.executable, "-m", "stoneforge", "merge", "list", "--json"],
            cwd=rig.root,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
    )
    assert len(listed["mergeRequests"]) == 4
    last_commit = rig.store.get_merge_request(last.id).merged_commit
    assert listed["flakyChecks"] == [
        {"command": command, "count": 3, "lastMergeRequest": last.id, "lastCommit": last_commit}
    ]
    rig.close()


async def test_a_quarantined_check_is_reported_but_does_not_block(tmp_path: Path) -> None:
    known_bad = "echo 'known flaky integration test'; exit 3"
    rig = StewardRig(tmp_path / "repo", checks=[])
    rig.config.merge.checks = [known_bad, rig.check_command()]
    rig.config.merge.quarantine = [known_bad]
    _, mr = rig.submit("Feature", {"a.txt": "a\n"})
    await rig.drain()
    merged = rig.store.get_merge_request(mr.id)
    assert merged.status == MergeStatus.MERGED
    bad, good = merged.checks
    assert (bad.command, bad.exit_code, bad.quarantined) == (known_bad, 3, True)
    assert "known flaky integration test" in bad.output_tail
    assert (good.exit_code, good.quarantined) == (0, False)
    assert any(f"quarantined check `{known_bad}` failed (exit 3)" in n for n in rig.notes)
    assert flaky_events(rig) == []
    # A real failure next to it is the one named as the reason.
    _, broken = rig.submit("Broken", {"bad_file": "x\n"})
    await rig.drain()
    failed = rig.store.get_merge_request(broken.id)
    assert failed.status == MergeStatus.TEST_FAILED
    assert f"check `{rig.check_command()}` failed (exit 1)" in (failed.reason or "")

    # Not listed, the same failure blocks: nothing is quarantined implicitly.
    strict = StewardRig(tmp_path / "strict", checks=[known_bad, "true"])
    _, blocked = strict.submit("Feature", {"a.txt": "a\n"})
    await strict.drain()
    assert status(strict, blocked.id) == MergeStatus.TEST_FAILED
    rig.close()
    strict.close()


# -- the steward's own agent crashing ------------------------------------------------------------


def conflicting(rig: StewardRig) -> tuple[str, str]:
    rig.submit("Ours", {"shared.txt": "line 1\nline 2 ours\nline 3\n"})
    theirs, mr = rig.submit("Theirs", {"shared.txt": "line 1\nline 2 theirs\nline 3\n"})
    return theirs.id, mr.id


def steward_sessions(rig: StewardRig) -> list[str]:
    return [s.status.value for s in rig.store.list_sessions() if s.role.value == "steward"]


@pytest.mark.parametrize("mode", ["crashed", "raise"])
async def test_a_crashed_resolver_is_retried_not_given_up(tmp_path: Path, mode: str) -> None:
    provider = StubProvider(resolve=True, crashes=1, crash_mode=mode)
    rig = StewardRig(tmp_path / "repo", provider=provider, files={"shared.txt": SHARED})
    task_id, mr_id = conflicting(rig)
    await rig.drain()
    assert status(rig, mr_id) == MergeStatus.MERGED
    assert rig.store.get_task(task_id).status == TaskStatus.MERGED
    assert len(provider.calls) == 2
    assert steward_sessions(rig) == [SessionStatus.CRASHED.value, SessionStatus.COMPLETED.value]
    assert not [t for t in rig.store.list_tasks() if t.title.startswith("Resolve merge conflict")]
    assert "line 2 ours\nline 2 theirs" in git(rig.root, "show", "main:shared.txt")
    assert "half an edit" not in git(rig.root, "show", "main:shared.txt")
    rig.close()


async def test_a_resolver_that_keeps_crashing_leaves_the_mr_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steward_module, "RESOLVER_HOLD_S", 3.0)
    provider = StubProvider(resolve=True, crashes=100)
    rig = StewardRig(tmp_path / "repo", provider=provider, files={"shared.txt": SHARED})
    task_id, mr_id = conflicting(rig)
    steward = rig.make_steward()
    await steward.round()
    assert len(provider.calls) == 3  # the first try and RESOLVER_RETRIES more
    waiting = rig.store.get_merge_request(mr_id)
    assert waiting.status == MergeStatus.PENDING
    assert "did not finish in 3 tries" in (waiting.reason or "")
    assert rig.store.get_task(task_id).status == TaskStatus.REVIEW
    assert not [t for t in rig.store.list_tasks() if t.title.startswith("Resolve merge conflict")]
    # Held for a while: the next round starts no session.
    await steward.round()
    assert len(provider.calls) == 3
    # Once the hold has passed (and the agent works again) it is resolved and lands.
    assert steward._retry_in is not None and 0 < steward._retry_in <= 3.0
    await anyio.sleep(steward._retry_in + 0.1)
    provider.crashes = 0
    await rig.drain()
    assert status(rig, mr_id) == MergeStatus.MERGED
    assert rig.store.get_task(task_id).status == TaskStatus.MERGED
    rig.close()
