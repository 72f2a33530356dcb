"""The merge queue with a remote target: a bare `origin` holds `main`, the steward lands by
compare-and-swap push, someone else's push is never overwritten, a refusal is stated clearly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import pytest

from steward_helpers import StewardRig, check_tree, checked_ok, git
from stoneforge.models import MergeStatus, TaskStatus

pytestmark = [pytest.mark.timeout(120)]


def rig_with_origin(tmp_path: Path, **kwargs: object) -> tuple[StewardRig, Path]:
    rig = StewardRig(tmp_path / "repo", **kwargs)  # type: ignore[arg-type]
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(rig.root), str(origin)], check=True)
    git(rig.root, "remote", "add", "origin", str(origin))
    rig.config.merge.remote = "origin"
    rig.config.merge.pushBranches = True
    return rig, origin


def origin_first_parents(origin: Path) -> list[str]:
    return git(origin, "rev-list", "--first-parent", "main").split()


async def test_tasks_land_on_the_remote_and_it_holds_only_checked_commits(tmp_path: Path) -> None:
    rig, origin = rig_with_origin(tmp_path, batch_size=2)
    mrs = [rig.submit(f"Feature {n}", {f"f{n}.txt": f"{n}\n"})[1] for n in range(4)]
    _, bad = rig.submit("Broken", {"bad_1": "x\n"})
    await rig.drain()
    assert [rig.store.get_merge_request(m.id).status for m in mrs] == [MergeStatus.MERGED] * 4
    assert rig.store.get_merge_request(bad.id).status == MergeStatus.TEST_FAILED
    ok = checked_ok(rig.log)
    initial = origin_first_parents(origin)[-1]
    for commit in origin_first_parents(origin)[:-1]:
        assert commit in ok and check_tree(rig.root, commit, rig.script, tmp_path / "scratch")
    assert git(origin, "rev-parse", "main") != initial
    # The local main followed the remote (its checkout was clean).
    assert rig.tip() == git(origin, "rev-parse", "main")
    assert (rig.root / "f3.txt").exists()
    rig.close()


async def test_a_push_by_someone_else_during_the_check_is_kept_and_ours_rechecked(
    tmp_path: Path,
) -> None:
    rig, origin = rig_with_origin(tmp_path, checks=None)
    rig.config.merge.checks = [f"sleep 2; {rig.check_command()}"]
    _, mr = rig.submit("Ours", {"ours.txt": "ours\n"})
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(origin), str(other)], check=True)
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "someone else's work")
    theirs = git(other, "rev-parse", "HEAD")
    steward = rig.make_steward()
    async with anyio.create_task_group() as group:
        group.start_soon(rig.drain)
        with anyio.fail_after(30):  # the steward is checking its candidate on the old tip
            while rig.store.get_merge_request(mr.id).status != MergeStatus.TESTING:
                await anyio.sleep(0.02)
        git(other, "push", "-q", "origin", "HEAD:main")
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.MERGED
    assert steward.check_runs == 2  # checked again on the new tip
    history = git(origin, "rev-list", "main").split()
    assert theirs in history  # nothing on the remote was overwritten
    tree = git(origin, "ls-tree", "--name-only", "main").split()
    assert "ours.txt" in tree and "theirs.txt" in tree
    rig.close()


async def test_a_push_the_remote_refuses_fails_the_mr_with_the_remote_s_reason(
    tmp_path: Path,
) -> None:
    rig, origin = rig_with_origin(tmp_path, checks=["true"])
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is frozen for the release'\nexit 1\n")
    hook.chmod(0o755)
    before = git(origin, "rev-parse", "main")
    task, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    await rig.drain()
    failed = rig.store.get_merge_request(mr.id)
    assert failed.status == MergeStatus.TEST_FAILED
    assert "main is frozen for the release" in (failed.reason or "")
    task = rig.store.get_task(task.id)
    assert task.status == TaskStatus.FAILED and mr.branch in (task.note or "")
    assert git(origin, "rev-parse", "main") == before
    assert "feature.txt" in git(rig.root, "ls-tree", "--name-only", mr.branch).split()
    rig.close()


async def test_a_dirty_local_checkout_does_not_hold_up_landing_on_the_remote(
    tmp_path: Path,
) -> None:
    rig, origin = rig_with_origin(tmp_path, checks=["true"])
    (rig.root / "README.md").write_text("# a person is editing this\n")
    local_before = rig.tip()
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.MERGED
    assert "feature.txt" in git(origin, "ls-tree", "--name-only", "main").split()
    # The local branch did not move under the edit, and the edit is intact.
    assert rig.tip() == local_before
    assert (rig.root / "README.md").read_text() == "# a person is editing this\n"
    rig.close()
