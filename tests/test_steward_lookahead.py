"""Look-ahead checks (`merge.parallelChecks: 2`): batch k+1 is checked on top of batch k's
candidate while k is checked on the target, each in its own check checkout.

Real git, real check processes (the rig's check script, with a `sleep` so that two checks are
seen to run at once). A wrapper around the steward's `_checks` records which commit each check
ran on, in which slot, and when it started and ended.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from steward_helpers import (
    StewardRig,
    check_tree,
    checked_ok,
    commit_files,
    first_parents,
    git,
)
from stoneforge import render
from stoneforge.lifecycle import MrEvent
from stoneforge.models import CheckRun, MergeRequest, MergeStatus, TaskStatus
from stoneforge.orchestrator.check_procs import CheckRegistry
from stoneforge.orchestrator.steward import Steward
from stoneforge.service import Service

pytestmark = [pytest.mark.timeout(180)]


@dataclass
class Seen:
    commit: str
    slot: int
    started: float
    ended: float | None = None  # None: stopped before it finished


def record_checks(steward: Steward) -> list[Seen]:
    """Record every check the steward starts (commit, slot, start and end)."""
    seen: list[Seen] = []
    real = steward._checks

    async def checks(commit: str, *, slot: int = 0) -> list[CheckRun]:
        item = Seen(commit, slot, time.monotonic())
        seen.append(item)
        runs = await real(commit, slot=slot)
        item.ended = time.monotonic()
        return runs

    steward._checks = checks  # type: ignore[method-assign]
    return seen


def make_rig(tmp_path: Path, *, sleep_s: float = 1.0, **kw: object) -> StewardRig:
    rig = StewardRig(
        tmp_path / "repo",
        batch_size=2,
        max_attempts=1,
        parallel_checks=2,
        **kw,  # type: ignore[arg-type]
    )
    rig.config.merge.checks = [f"sleep {sleep_s:g}; {rig.check_command()}"]
    return rig


def submit_all(rig: StewardRig, bad: int | None = None, n: int = 4) -> list[MergeRequest]:
    return [
        rig.submit(f"Change {i}", {(f"bad_{i}" if i == bad else f"mod_{i}.txt"): f"{i}\n"})[1]
        for i in range(n)
    ]


def status(rig: StewardRig, mr: MergeRequest) -> MergeStatus:
    return rig.store.get_merge_request(mr.id).status


def parent(rig: StewardRig, commit: str) -> str:
    return git(rig.root, "rev-parse", f"{commit}^1")


def assert_main_holds_only_checked_green_commits(rig: StewardRig, tmp_path: Path) -> None:
    ok = checked_ok(rig.log)
    for commit in first_parents(rig.root):
        assert commit in ok, f"{commit[:10]} is on main but its checks never passed on it"
        assert check_tree(rig.root, commit, rig.script, tmp_path / "scratch"), f"{commit[:10]} red"


async def test_the_second_batch_checked_on_the_first_lands_without_another_run(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    mrs = submit_all(rig)
    steward = rig.make_steward()
    seen = record_checks(steward)
    await rig.drain()
    assert [status(rig, m) for m in mrs] == [MergeStatus.MERGED] * 4
    # Two batches, two check runs: the second batch's result stood once the first landed.
    assert steward.check_runs == 2 and len(seen) == 2
    first, second = (rig.store.get_merge_request(m.id).merged_commit for m in (mrs[0], mrs[2]))
    assert first is not None and second is not None
    assert first_parents(rig.root) == [second, first]
    assert parent(rig, second) == first  # built on the first batch's candidate, as checked
    assert {s.commit for s in seen} == {first, second}
    # ... in two checkouts at once.
    a, b = sorted(seen, key=lambda s: s.slot)
    assert (a.slot, b.slot) == (0, 1)
    assert a.ended is not None and b.ended is not None
    assert b.started < a.ended and a.started < b.ended, "the two checks did not overlap"
    assert_main_holds_only_checked_green_commits(rig, tmp_path)
    rig.close()


@pytest.mark.parametrize("bad", [0, 1])
async def test_a_bad_mr_in_the_first_batch_lands_nothing_red_and_the_next_is_rechecked(
    tmp_path: Path, bad: int
) -> None:
    rig = make_rig(tmp_path)
    mrs = submit_all(rig, bad=bad)
    steward = rig.make_steward()
    seen = record_checks(steward)
    await rig.drain()
    states = [status(rig, m) for m in mrs]
    assert states[bad] == MergeStatus.TEST_FAILED
    assert states.count(MergeStatus.MERGED) == 3
    assert rig.store.get_task(mrs[bad].task_id).status == TaskStatus.FAILED
    assert not (rig.root / f"bad_{bad}").exists() and f"bad_{bad}" not in git(
        rig.root, "ls-tree", "--name-only", "main"
    )
    assert_main_holds_only_checked_green_commits(rig, tmp_path)
    # The second batch was first checked on top of the first batch's candidate, which never
    # landed; then again on the real tip, and that is the commit that landed.
    speculative = [s for s in seen if not on_main(rig, parent(rig, s.commit))]
    assert speculative, "nothing was checked ahead on a candidate that did not land"
    second = rig.store.get_merge_request(mrs[2].id).merged_commit
    assert second in {s.commit for s in seen}
    assert second not in {s.commit for s in speculative}
    rig.close()


def on_main(rig: StewardRig, commit: str) -> bool:
    proc = subprocess.run(
        ["git", "merge-base", "--is-ancestor", commit, "main"], cwd=rig.root, check=False
    )
    return proc.returncode == 0


@pytest.mark.parametrize("which", ["first batch", "second batch"])
async def test_a_task_cancelled_while_checked_ahead_never_lands_and_the_rest_is_rebuilt(
    tmp_path: Path, which: str
) -> None:
    rig = make_rig(tmp_path, sleep_s=3)
    mrs = submit_all(rig)
    victim = mrs[0] if which == "first batch" else mrs[3]
    steward = rig.make_steward()
    seen = record_checks(steward)
    async with anyio.create_task_group() as group:
        group.start_soon(rig.drain)
        with anyio.fail_after(30):  # both batches are being checked: the second speculatively
            while len(seen) < 2:
                await anyio.sleep(0.02)
        rig.store.cancel_task(victim.task_id)
    assert status(rig, victim) != MergeStatus.MERGED
    assert [status(rig, m) for m in mrs if m is not victim] == [MergeStatus.MERGED] * 3
    tree = git(rig.root, "ls-tree", "--name-only", "main").split()
    assert f"mod_{mrs.index(victim)}.txt" not in tree
    assert_main_holds_only_checked_green_commits(rig, tmp_path)
    # The candidates holding the cancelled task were stopped, not checked to the end: the
    # second batch is built on the first, so a cancel in the first stops both.
    stopped = [s for s in seen[:2] if s.ended is None]
    assert len(stopped) == (2 if which == "first batch" else 1), seen
    assert steward.check_runs == len(seen) - len(stopped)
    rig.close()


def submit_for_review(rig: StewardRig, n: int) -> MergeRequest:
    """A finished task whose merge request starts `reviewing`, as with `agents.steward.review`."""
    task = rig.store.create_task(f"Reviewed {n}")
    head = commit_files(rig.root, rig.tip(), {f"rev_{n}.txt": f"{n}\n"}, f"rev {n}", rig.index)
    git(rig.root, "update-ref", f"refs/heads/sf/{task.id}", head)
    attempt = rig.store.dispatch_task(task.id).dispatches
    return rig.store.complete_task(
        task.id,
        attempt=attempt,
        branch=f"sf/{task.id}",
        head_commit=head,
        summary=f"Reviewed {n}",
        review=True,
    )


async def test_merge_requests_in_review_do_not_land_with_look_ahead(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sleep_s=0)
    mrs = [submit_for_review(rig, n) for n in range(4)]
    assert {status(rig, m) for m in mrs} == {MergeStatus.REVIEWING}
    for mr in mrs[::2]:  # the reviewer approved two of the four
        rig.store.transition_merge_request(mr.id, MrEvent.PASS_REVIEW)
    await rig.drain()
    assert [status(rig, m) for m in mrs] == [
        MergeStatus.MERGED,
        MergeStatus.REVIEWING,
        MergeStatus.MERGED,
        MergeStatus.REVIEWING,
    ]
    tree = git(rig.root, "ls-tree", "--name-only", "main").split()
    assert "rev_1.txt" not in tree and "rev_3.txt" not in tree
    assert_main_holds_only_checked_green_commits(rig, tmp_path)
    rig.close()


async def test_a_dependent_is_checked_ahead_only_on_top_of_its_blocker(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sleep_s=0)
    t1, m1 = rig.submit("Provides", {"provides_0": "x\n"})
    _, m2 = rig.submit("Other", {"other.txt": "x\n"})
    _, m3 = rig.submit("Needs", {"needs_0": "x\n"}, depends_on=(t1.id,))
    await rig.drain()
    assert [status(rig, m) for m in (m1, m2, m3)] == [MergeStatus.MERGED] * 3
    line = first_parents(rig.root)
    merged = {m.id: rig.store.get_merge_request(m.id).merged_commit for m in (m1, m3)}
    assert line.index(merged[m3.id]) <= line.index(merged[m1.id])  # not before its blocker
    assert_main_holds_only_checked_green_commits(rig, tmp_path)
    rig.close()


async def test_status_and_merge_list_show_the_candidates_checked_at_once(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sleep_s=3)
    mrs = submit_all(rig)
    service = Service(rig.root, rig.config, rig.store)
    assert service.merge_checking() == []
    steward = rig.make_steward()
    seen = record_checks(steward)
    async with anyio.create_task_group() as group:
        group.start_soon(rig.drain)
        with anyio.fail_after(30):
            while len(seen) < 2:
                await anyio.sleep(0.02)
        checking = service.merge_checking()
        summary = service.status()
        lines = render.checking_lines(checking, "main")
        tip = rig.tip()
    first, second = checking
    assert first.merge_requests == [mrs[0].id, mrs[1].id] and first.on_target
    assert first.base == tip
    assert second.merge_requests == [mrs[2].id, mrs[3].id] and not second.on_target
    assert second.base == first.candidate  # built on the first batch's candidate
    assert second.on_merge_requests == first.merge_requests
    assert summary.checking == checking
    assert summary.wire()["checking"][1]["onMergeRequests"] == [mrs[0].id, mrs[1].id]
    assert lines == [
        "checking now (2 at once):",
        f"  {mrs[0].id}, {mrs[1].id} on main (candidate {first.candidate[:10]})",
        f"  {mrs[2].id}, {mrs[3].id} on {mrs[0].id}, {mrs[1].id} (candidate "
        f"{second.candidate[:10]})",
    ]
    assert service.merge_checking() == []  # all landed
    rig.close()


def test_a_sweep_keeps_a_live_stewards_slot_checkouts_and_removes_a_dead_ones(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo")
    worktrees = rig.root / ".stoneforge" / "worktrees"
    live = CheckRegistry(rig.root, worktrees, "live0001")
    live.register()
    names = ["_steward-live0001", "_steward-live0001.1", "_steward-dead0001.1"]
    for name in names:
        git(rig.root, "worktree", "add", "-q", "--detach", str(worktrees / name), "main")
    assert live.checkout_for(1) == worktrees / "_steward-live0001.1"
    other = CheckRegistry(rig.root, worktrees, "other001")
    other.register()
    done = other.sweep()
    assert (worktrees / "_steward-live0001").is_dir()
    assert (worktrees / "_steward-live0001.1").is_dir()  # a live steward's look-ahead slot
    assert not (worktrees / "_steward-dead0001.1").exists()
    assert done == ["removed the check checkout _steward-dead0001.1 of a steward that is gone"]
    rig.close()
