"""Plans named by title wherever a plan is named; tasks that continue an existing branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import SfRunner, git


def test_the_walkthrough_names_its_plan_by_title(initialised: Path, sf: SfRunner) -> None:
    plan = sf("plan", "create", "--title", "Sprint 14").stdout.strip()
    task = sf("task", "create", "--title", "Add user invitation API", "--plan", "Sprint 14")
    shown = sf("task", "show", task.stdout.strip(), "--json").json()
    assert shown["planId"] == plan
    assert sf("plan", "show", "Sprint 14", "--json").json()["id"] == plan
    sf("plan", "create", "--title", "Sprint 14")
    ambiguous = sf("task", "create", "--title", "x", "--plan", "Sprint 14", check=False)
    assert ambiguous.returncode != 0
    assert "ambiguous" in ambiguous.stderr and plan in ambiguous.stderr
    missing = sf("task", "create", "--title", "x", "--plan", "Sprint 99", check=False)
    assert missing.returncode != 0 and "no plan with id or title 'Sprint 99'" in missing.stderr


def test_a_task_continues_an_existing_local_or_remote_branch(
    initialised: Path, sf: SfRunner, tmp_path: Path
) -> None:
    git(initialised, "branch", "feature/local")
    task = sf("task", "create", "--title", "Go on", "--branch", "feature/local", "--json").json()
    assert task["branch"] == "feature/local"
    # A branch that exists only on a remote becomes a local branch at the remote's commit.
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(initialised), str(origin)], check=True)
    git(initialised, "remote", "add", "origin", str(origin))
    git(initialised, "push", "-q", "origin", "HEAD:refs/heads/feature/remote")
    git(initialised, "fetch", "-q", "origin")
    remote = sf("task", "create", "--title", "Go on", "--branch", "feature/remote", "--json").json()
    assert remote["branch"] == "feature/remote"
    assert git(initialised, "rev-parse", "feature/remote") == git(
        initialised, "rev-parse", "origin/feature/remote"
    )
    for bad, says in [
        ("nope/x", "no branch nope/x"),
        ("main", "target branch main"),
        ("a..b", "not a valid"),
    ]:
        refused = sf("task", "create", "--title", "x", "--branch", bad, check=False)
        assert refused.returncode != 0 and says in refused.stderr, refused.stderr
