"""Changes to the gate itself need a person: an MR touching `merge.protectedPaths` waits for
approval even with autoMerge on, while the rest of the queue lands."""

from __future__ import annotations

from pathlib import Path

import pytest

from steward_helpers import StewardRig, git
from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.orchestrator.steward import protected
from stoneforge.service import Service

pytestmark = [pytest.mark.timeout(120)]


def test_protected_paths_match_files_and_directories() -> None:
    patterns = [".stoneforge/", ".github/", "Makefile"]
    assert protected(".github/workflows/ci.yml", patterns)
    assert protected(".stoneforge/config.yaml", patterns)
    assert protected("Makefile", patterns)
    assert not protected(".githubx/a", patterns) and not protected("src/Makefile", patterns)


async def test_a_change_to_the_ci_config_waits_for_a_person_and_lands_once_approved(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])  # autoMerge on
    gate_task, gate = rig.submit("Loosen CI", {".github/workflows/ci.yml": "run: true\n"})
    _, plain = rig.submit("Feature", {"feature.txt": "1\n"})
    await rig.drain()
    waiting = rig.store.get_merge_request(gate.id)
    assert waiting.status == MergeStatus.AWAITING_APPROVAL
    assert ".github/workflows/ci.yml" in (waiting.reason or "")
    assert rig.store.get_merge_request(plain.id).status == MergeStatus.MERGED
    assert ".github" not in git(rig.root, "ls-tree", "--name-only", "main").split()
    Service(rig.root, rig.config, rig.store).approve_merge(gate.id)
    await rig.drain()
    assert rig.store.get_merge_request(gate.id).status == MergeStatus.MERGED
    assert rig.store.get_task(gate_task.id).status == TaskStatus.MERGED
    assert ".github" in git(rig.root, "ls-tree", "--name-only", "main").split()
    rig.close()
