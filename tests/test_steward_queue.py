"""The steward driven directly (no agents, no `sf serve`): real git, real check commands.

Each test builds a repository with `StewardRig`, leaves task branches and merge requests as
workers would, and runs `Steward.round()` until the queue is done. The check script records
every commit it judged, so "main never held an unchecked commit" is asserted, not assumed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from steward_helpers import (
    StewardRig,
    StubProvider,
    check_tree,
    checked_ok,
    first_parents,
    git,
)
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.orchestrator.checks import run_check

pytestmark = [pytest.mark.timeout(120)]


def assert_main_green(rig: StewardRig, scratch: Path) -> None:
    """Every first-parent commit of main was checked (and passed) before it landed, and the
    check passes on it when run again now."""
    ok = checked_ok(rig.log)
    for commit in first_parents(rig.root):
        subject = git(rig.root, "log", "-1", "--format=%s", commit)
        assert commit in ok, f"{commit[:10]} ({subject}) landed without a passing check"
        assert check_tree(rig.root, commit, rig.script, scratch), f"{subject} is red"


def status(rig: StewardRig, mr_id: str) -> MergeStatus:
    return rig.store.get_merge_request(mr_id).status


async def test_a_batch_lands_as_one_checked_commit(tmp_path: Path) -> None:
    # `needs_x` is red without `provides_x`: red alone, green together. Stacked as a chain of
    # merges, the first merge would sit on main's first-parent line unchecked and red.
    rig = StewardRig(tmp_path / "repo", batch_size=4)
    needs, mr1 = rig.submit("Test for x", {"needs_x": "test\n"})
    provides, mr2 = rig.submit("Implement x", {"provides_x": "code\n"})
    _, mr3 = rig.submit("Unrelated", {"other.txt": "1\n"})
    await rig.drain()
    assert [status(rig, m.id) for m in (mr1, mr2, mr3)] == [MergeStatus.MERGED] * 3
    assert rig.steward is not None and rig.steward.check_runs == 1
    assert_main_green(rig, tmp_path / "scratch")
    (top,) = first_parents(rig.root)
    subject = git(rig.root, "log", "-1", "--format=%s", top)
    assert subject.startswith(f"Merge task {needs.id}: Test for x; Merge task {provides.id}:")
    # The per-task merges are behind the batch commit's second parent, each branch merged.
    second = git(rig.root, "log", "--first-parent", "--format=%s", f"{top}^2")
    assert f"Merge task {provides.id}: Implement x" in second
    for mr in (mr1, mr2, mr3):
        merged = rig.store.get_merge_request(mr.id)
        assert merged.merged_commit == merged.candidate_commit == top
        assert not merged.checks[0].flaky and merged.checks[0].exit_code == 0
    # The user's checkout of main followed the landing.
    assert (rig.root / "provides_x").read_text() == "code\n"
    assert git(rig.root, "status", "--porcelain", "--untracked-files=no") == ""
    rig.close()


@pytest.mark.parametrize(("bad_at", "expected_runs"), [(0, 8), (3, 7), (7, 6)])
async def test_bisection_lands_the_seven_good_ones(
    tmp_path: Path, bad_at: int, expected_runs: int
) -> None:
    # One batch at a time: these are the one-batch queue's bisection counts.
    rig = StewardRig(tmp_path / "repo", batch_size=8, max_attempts=1, parallel_checks=1)
    mrs = []
    for n in range(8):
        name = f"bad_{n}" if n == bad_at else f"mod_{n}.txt"
        mrs.append(rig.submit(f"Change {n}", {name: f"{n}\n"})[1])
    await rig.drain()
    states = [status(rig, m.id) for m in mrs]
    assert states.count(MergeStatus.MERGED) == 7
    assert states[bad_at] == MergeStatus.TEST_FAILED
    bad = rig.store.get_merge_request(mrs[bad_at].id)
    assert [r.exit_code for r in bad.checks] == [1, 1]  # failed, and failed again on the retry
    assert f"broken: bad_{bad_at} is present" in bad.checks[0].output_tail
    task = rig.store.get_task(bad.task_id)
    assert task.status == TaskStatus.FAILED  # maxAttempts 1: no second attempt
    assert f"bad_{bad_at} is present" in (task.note or "")
    assert rig.steward is not None and rig.steward.check_runs == expected_runs
    assert_main_green(rig, tmp_path / "scratch")
    rig.close()


async def test_a_flaky_check_lands_and_is_recorded(tmp_path: Path) -> None:
    flag = tmp_path / "flaked-once"
    check = f"test -e {flag} || {{ touch {flag}; echo 'flaky failure'; exit 1; }}"
    rig = StewardRig(tmp_path / "repo", checks=[check])
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    await rig.drain()
    merged = rig.store.get_merge_request(mr.id)
    assert merged.status == MergeStatus.MERGED
    (run,) = merged.checks
    assert run.flaky and run.exit_code == 0
    assert "flaky failure" in run.output_tail  # the first run's output is kept
    assert rig.steward is not None and rig.steward.check_runs == 2
    assert any("flaky" in n for n in rig.notes)
    rig.close()


async def test_a_dependent_waits_for_its_blocker(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo", batch_size=1)
    blocker = rig.store.create_task("Blocker", priority=5)
    # The dependent is older and more urgent, and its work is done first.
    dependent, dep_mr = rig.submit("Dependent", {"dep.txt": "1\n"}, priority=1)
    rig.store.add_dependency(dependent.id, blocker.id)
    steward = rig.make_steward()
    assert await steward.round() is False  # held: nothing to do yet
    assert status(rig, dep_mr.id) == MergeStatus.PENDING
    assert steward.check_runs == 0
    assert any(f"waits for its blocker(s) {blocker.id}" in n for n in rig.notes)
    # The blocker's work arrives (the rig opens a new task for it; make that the blocker).
    later, block_mr = rig.submit("Blocker work", {"block.txt": "1\n"}, priority=5)
    rig.store.cancel_task(blocker.id)
    rig.store.add_dependency(dependent.id, later.id)
    await rig.drain()
    order = [git(rig.root, "log", "-1", "--format=%s", c) for c in first_parents(rig.root)]
    assert order == [
        f"Merge task {dependent.id}: Dependent",
        f"Merge task {later.id}: Blocker work",
    ]  # newest first: the blocker landed first
    assert status(rig, block_mr.id) == status(rig, dep_mr.id) == MergeStatus.MERGED
    rig.close()


async def test_a_dependent_lands_when_its_blocker_can_no_longer_land(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    failed = rig.store.create_task("Failed for good")
    rig.store.dispatch_task(failed.id)
    rig.store.transition_task(failed.id, TaskEvent.FAIL)
    stuck = rig.store.create_task("Blocked behind the failed one", depends_on=(failed.id,))
    _, mr = rig.submit("Dependent", {"dep.txt": "1\n"}, depends_on=(stuck.id,))
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED  # the checks, not the graph, judge it
    rig.close()


async def test_a_dependent_does_not_land_when_its_blocker_fails_in_the_same_batch(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", batch_size=4, max_attempts=2)
    blocker, block_mr = rig.submit("Blocker", {"bad_block": "1\n"})
    dependent, dep_mr = rig.submit("Dependent", {"dep.txt": "1\n"}, depends_on=(blocker.id,))
    _, free_mr = rig.submit("Independent", {"free.txt": "1\n"})
    await rig.drain()
    assert status(rig, block_mr.id) == MergeStatus.TEST_FAILED
    assert rig.store.get_task(blocker.id).status == TaskStatus.OPEN  # back to a worker
    assert status(rig, free_mr.id) == MergeStatus.MERGED
    assert status(rig, dep_mr.id) == MergeStatus.PENDING  # waits for the blocker's next try
    assert rig.store.get_task(dependent.id).status == TaskStatus.REVIEW
    assert_main_green(rig, tmp_path / "scratch")
    rig.close()


async def test_merge_requests_of_cancelled_tasks_and_deleted_branches_are_dropped(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo")
    cancelled, mr1 = rig.submit("Cancelled", {"a.txt": "1\n"})
    gone, mr2 = rig.submit("Branch deleted", {"b.txt": "1\n"})
    _, mr3 = rig.submit("Fine", {"c.txt": "1\n"})
    rig.store.cancel_task(cancelled.id)
    git(rig.root, "branch", "-D", mr2.branch)
    await rig.drain()
    assert status(rig, mr1.id) == MergeStatus.REJECTED
    assert rig.store.get_task(cancelled.id).status == TaskStatus.CANCELLED
    assert status(rig, mr2.id) == MergeStatus.REJECTED
    assert "no longer exists" in (rig.store.get_merge_request(mr2.id).reason or "")
    assert rig.store.get_task(gone.id).status == TaskStatus.OPEN  # sent back to redo it
    assert status(rig, mr3.id) == MergeStatus.MERGED
    assert not (rig.root / "a.txt").exists()
    rig.close()


def pause_events(rig: StewardRig) -> list[tuple[str, dict]]:
    return [(e.kind, e.data) for e in rig.store.events_since(0) if e.entity == "steward"]


async def test_a_dirty_checkout_of_main_waits_without_spending_check_runs(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    (rig.root / "README.md").write_text("# being edited\n")
    steward = rig.make_steward()
    for _ in range(3):
        assert await steward.round() is False
    assert steward.check_runs == 0 and status(rig, mr.id) == MergeStatus.PENDING
    reason = f"{rig.root} has uncommitted changes in README.md"
    assert sum(f"landing paused: {reason}" in n for n in rig.notes) == 1  # said once
    assert steward.landing_paused is not None and steward.landing_paused.files == ["README.md"]
    git(rig.root, "checkout", "README.md")
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED and steward.check_runs == 1
    assert (rig.root / "feature.txt").exists()
    # Recorded once per change of state, not once per round.
    assert [kind for kind, _ in pause_events(rig)] == ["steward.paused", "steward.resumed"]
    assert pause_events(rig)[0][1]["files"] == ["README.md"]
    assert pause_events(rig)[0][1]["reason"] == reason
    assert steward.landing_paused is None
    rig.close()


async def test_an_untracked_file_in_the_way_is_never_checked_against(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    _, mr = rig.submit("Add notes", {"notes.txt": "from the branch\n"})
    (rig.root / "notes.txt").write_text("the user's own notes\n")  # untracked, in the way
    steward = rig.make_steward()
    for _ in range(3):
        assert await steward.round() is False  # found before any check runs
    assert steward.check_runs == 0 and status(rig, mr.id) == MergeStatus.PENDING
    assert (rig.root / "notes.txt").read_text() == "the user's own notes\n"
    assert pause_events(rig)[0][1]["files"] == ["notes.txt"]
    (rig.root / "notes.txt").unlink()
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED and steward.check_runs == 1
    assert (rig.root / "notes.txt").read_text() == "from the branch\n"
    rig.close()


async def test_a_file_where_a_candidate_adds_a_directory_pauses_instead_of_looping(
    tmp_path: Path,
) -> None:
    """Once: checked, landed, undone, again every 5 s. Now: paused, no check, no landing."""
    rig = StewardRig(tmp_path / "repo")
    _, mr = rig.submit("Add docs", {"docs/index.md": "# docs\n"})
    (rig.root / "docs").write_text("user's scratch notes\n")  # named like the new directory
    steward = rig.make_steward()
    for _ in range(4):
        assert await steward.round() is False
    assert steward.check_runs == 0 and first_parents(rig.root) == []
    assert "undo land" not in git(rig.root, "reflog", "--format=%gs", "main")
    assert [kind for kind, _ in pause_events(rig)] == ["steward.paused"]
    assert pause_events(rig)[0][1]["reason"] == (
        f"{rig.root} has untracked files in the way of the landing: docs"
    )
    (rig.root / "docs").rename(rig.root / "scratch.txt")
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED and steward.check_runs == 1
    assert (rig.root / "docs" / "index.md").read_text() == "# docs\n"
    assert [kind for kind, _ in pause_events(rig)] == ["steward.paused", "steward.resumed"]
    rig.close()


async def test_an_edit_made_during_the_checks_pauses_until_reverted_not_longer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user edits main's checkout after the pre-check and before the ref moves: that landing
    is refused (or undone), then what blocks *now* decides; reverting the edit lets it land."""
    from stoneforge.git import merge as merge_mod

    rig = StewardRig(tmp_path / "repo", files={"f.txt": "1\n"})
    _, mr = rig.submit("Feature", {"f.txt": "2\n"})
    real = merge_mod.checkout_block
    edits = []

    def user_edits_during_the_checks(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not edits:
            edits.append(1)
            (rig.root / "f.txt").write_text("the user's edit\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_mod, "checkout_block", user_edits_during_the_checks)
    steward = rig.make_steward()
    assert await steward.round() is True  # checked, then refused before the ref moved
    assert steward.check_runs == 1 and status(rig, mr.id) == MergeStatus.PENDING
    assert first_parents(rig.root) == []
    assert await steward.round() is False  # paused now, naming the file: no second check
    assert steward.check_runs == 1
    assert steward.landing_paused is not None and steward.landing_paused.files == ["f.txt"]
    git(rig.root, "checkout", "f.txt")  # reverted: f.txt still exists, but nothing blocks
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED and steward.check_runs == 2
    assert (rig.root / "f.txt").read_text() == "2\n" and steward.landing_paused is None
    rig.close()


async def test_the_run_loop_does_not_spin_while_the_checkout_is_dirty(tmp_path: Path) -> None:
    import anyio

    rig = StewardRig(tmp_path / "repo")
    rig.submit("Feature", {"feature.txt": "1\n"})
    (rig.root / "README.md").write_text("# being edited\n")
    steward = rig.make_steward()
    rounds = 0
    original = steward.round

    async def counting() -> bool:
        nonlocal rounds
        rounds += 1
        return await original()

    steward.round = counting  # type: ignore[method-assign]
    async with anyio.create_task_group() as group:
        group.start_soon(steward.run)
        await anyio.sleep(1.5)
        await steward.stop()
    assert rounds <= 2 and steward.check_runs == 0
    rig.close()


SHARED = "line 1\nline 2\nline 3\n"


async def test_the_ladder_resolves_with_an_agent_and_the_result_is_checked(
    tmp_path: Path,
) -> None:
    provider = StubProvider(resolve=True)
    rig = StewardRig(tmp_path / "repo", provider=provider, files={"shared.txt": SHARED})
    _, mr1 = rig.submit("Ours", {"shared.txt": "line 1\nline 2 ours\nline 3\n"})
    # Theirs also carries a file that breaks the checks: the resolution is checked and fails.
    second, mr2 = rig.submit(
        "Theirs", {"shared.txt": "line 1\nline 2 theirs\nline 3\n", "bad_leftover": "x\n"}
    )
    await rig.drain()
    assert status(rig, mr1.id) == MergeStatus.MERGED
    failed = rig.store.get_merge_request(mr2.id)
    assert failed.status == MergeStatus.TEST_FAILED
    (spec,) = provider.calls
    assert f"The merge of branch `{mr2.branch}`" in spec.prompt
    assert rig.steward is not None
    assert spec.cwd == rig.root / ".stoneforge" / "worktrees" / f"_steward-{rig.steward.id}"
    candidate = failed.candidate_commit or ""
    parents = git(rig.root, "rev-list", "--parents", "-n", "1", candidate).split()[1:]
    assert parents == [rig.tip(), rig.tip(mr2.branch)]  # a true merge on the tip it was checked on
    assert "line 2 ours\nline 2 theirs" in git(rig.root, "show", f"{candidate}:shared.txt")
    steward_sessions = [s for s in rig.store.list_sessions() if s.role.value == "steward"]
    assert [s.status.value for s in steward_sessions] == ["completed"]

    # The worker removes the broken file; the same conflict comes back and rerere (the shared
    # cache the agent's resolution was recorded in) resolves it: no second agent session.
    mr3 = rig.resubmit(second, {"bad_leftover": None})
    await rig.drain()
    assert status(rig, mr3.id) == MergeStatus.MERGED
    assert len(provider.calls) == 1
    assert any(f"{mr3.id}: merged by the rerere cache" in n for n in rig.notes), rig.notes
    assert (rig.root / "shared.txt").read_text() == "line 1\nline 2 ours\nline 2 theirs\nline 3\n"
    assert_main_green(rig, tmp_path / "scratch")
    rig.close()


async def test_an_unresolvable_conflict_makes_a_conflict_mr_and_a_fix_task(tmp_path: Path) -> None:
    rig = StewardRig(
        tmp_path / "repo", provider=StubProvider(resolve=False), files={"shared.txt": SHARED}
    )
    first, mr1 = rig.submit("Ours", {"shared.txt": "line 1\nline 2 ours\nline 3\n"})
    second, mr2 = rig.submit("Theirs", {"shared.txt": "line 1\nline 2 theirs\nline 3\n"})
    await rig.drain()
    assert status(rig, mr1.id) == MergeStatus.MERGED
    conflict = rig.store.get_merge_request(mr2.id)
    assert conflict.status == MergeStatus.CONFLICT
    assert rig.store.get_task(second.id).status == TaskStatus.FAILED
    fixes = [t for t in rig.store.list_tasks() if t.title.startswith("Resolve merge conflict")]
    (fix,) = fixes
    assert fix.priority == 1 and fix.depends_on == [] and fix.status == TaskStatus.OPEN
    assert mr2.branch in fix.description and first.branch in fix.description
    assert f"task {first.id}" in fix.description and "shared.txt" in fix.description
    assert f"fix task {fix.id}" in (rig.store.get_task(second.id).note or "")
    # The forecast saw it coming while both were in review (for the editor and the workers).
    forecasts = [e.data for e in rig.store.events_since(0) if e.kind == "forecast.updated"]
    assert {"ours": first.id, "theirs": second.id, "paths": ["shared.txt"]} in forecasts[0][
        "conflicts"
    ]
    # The steward's worktree is left clean for the next candidate.
    assert rig.steward is not None
    worktree = rig.root / ".stoneforge" / "worktrees" / f"_steward-{rig.steward.id}"
    assert git(worktree, "status", "--porcelain") == ""
    assert_main_green(rig, tmp_path / "scratch")
    rig.close()


async def test_a_resolved_conflict_waits_for_approval_when_auto_merge_is_off(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", auto_merge=False, files={"shared.txt": SHARED})
    _, mr1 = rig.submit("Ours", {"shared.txt": "line 1\nline 2 ours\nline 3\n"})
    _, mr2 = rig.submit("Theirs", {"shared.txt": "line 1\nline 2 theirs\nline 3\n"})
    await rig.drain()
    assert status(rig, mr1.id) == MergeStatus.AWAITING_APPROVAL
    assert status(rig, mr2.id) == MergeStatus.AWAITING_APPROVAL  # resolved, checked, not landed
    assert first_parents(rig.root) == []
    rig.close()


async def test_an_interrupted_check_is_run_again(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    rig.store.transition_merge_request(mr.id, MrEvent.CHECK)  # a round that died
    await rig.drain()
    assert status(rig, mr.id) == MergeStatus.MERGED
    rig.close()


async def test_a_check_that_times_out_leaves_no_process_behind(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    run = await run_check(f"sleep 30 & echo $! > {pidfile}; wait", tmp_path, 1.0)
    assert time.monotonic() - started < 10
    assert run.exit_code is None and "timed out after 1s" in run.output_tail
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists() or " Z" in Path(f"/proc/{pid}/stat").read_text():
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the check's child {pid} outlived the timeout")
