"""A team's set-up end to end: `main` lives on a shared remote (a bare `origin`), `sf serve` runs
real agent sessions, and every task lands through a compare-and-swap push of a checked commit.

The steward-level remote cases (someone else's push, a refusing hook) are in
test_steward_remote.py; this is the whole path with the real CLI.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import commit_steps, run_serve
from stoneforge.demo import FakeModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

GOOD = 6


def test_six_tasks_land_through_the_remote_and_it_holds_only_checked_commits(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path
) -> None:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(initialised), str(origin)], check=True)
    git(initialised, "remote", "add", "origin", str(origin))
    start = git(origin, "rev-parse", "main")
    log = tmp_path / "checks.log"
    # The check names the exact commit it ran on, and fails any tree with a `broken.txt`.
    check = f'echo "$(git rev-parse HEAD) $(test -e broken.txt && echo bad || echo ok)" >> {log}'
    write_config(
        initialised,
        "orchestrator:\n  retryBackoffS: 0.2\n  maxAttempts: 1\n"
        "merge:\n  remote: origin\n  pushBranches: true\n  batchSize: 2\n"
        f"  checks:\n    - {check!r}\n    - test ! -e broken.txt\n",
    )
    ids = [sf("task", "create", "--title", f"Feature {n}").stdout.strip() for n in range(GOOD)]
    broken = sf("task", "create", "--title", "Broken feature").stdout.strip()
    for n, task_id in enumerate(ids):
        fake_model.add_script(
            commit_steps(f"feature_{n}.py", f"VALUE = {n}\n", f"Add feature {n}"),
            marker=f"Stoneforge task {task_id}:",
        )
    fake_model.add_script(
        commit_steps("broken.txt", "oops\n", "Add a broken feature"),
        marker=f"Stoneforge task {broken}:",
    )

    code, out, err = run_serve(initialised, fake_model, "--max-concurrent", "3", timeout=360)
    assert code == 0, err

    # Every task's work is on the remote's main, each landed by the steward.
    for n, task_id in enumerate(ids):
        task = sf("task", "show", task_id, "--json").json()
        assert task["status"] == "merged", task
        assert git(origin, "show", f"main:feature_{n}.py") == f"VALUE = {n}"
    # The remote's first-parent line holds only commits the checks passed on, exactly as landed.
    checked = {line.split()[0] for line in log.read_text().splitlines() if line.endswith(" ok")}
    landed = git(origin, "rev-list", "--first-parent", f"{start}..main").split()
    assert landed and set(landed) <= checked, (landed, log.read_text())
    assert "broken.txt" not in git(origin, "ls-tree", "--name-only", "main")  # never landed

    # The broken task failed its checks and its work stayed on its branch, on the remote too
    # (pushBranches put it there); merged branches were deleted there.
    failed = sf("task", "show", broken, "--json").json()
    assert failed["mergeRequest"]["status"] == "test_failed", failed
    remote_branches = git(origin, "branch", "--format=%(refname:short)").split()
    assert failed["branch"] in remote_branches
    assert git(origin, "show", f"{failed['branch']}:broken.txt") == "oops"
    merged_branches = {sf("task", "show", i, "--json").json()["branch"] for i in ids}
    assert not merged_branches & set(remote_branches)
    # The local main followed the remote by fast-forward.
    assert git(initialised, "rev-parse", "main") == git(origin, "rev-parse", "main")
