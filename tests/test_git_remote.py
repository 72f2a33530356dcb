"""A target on a remote: compare-and-swap pushes that never overwrite anyone, with a bare origin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest_git import Repo, a_worktree_being_added, isolate_git, make_repo
from stoneforge.git.errors import TargetMoved
from stoneforge.git.remote import PushRefused, fetch_branch, push_branch, push_compare_and_swap


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


def with_origin(tmp_path: Path) -> tuple[Repo, Path]:
    repo = make_repo(tmp_path)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(origin)], check=True)
    repo.git("remote", "add", "origin", str(origin))
    return repo, origin


def remote_tip(origin: Path, branch: str = "main") -> str:
    return subprocess.run(
        ["git", "rev-parse", branch], cwd=origin, capture_output=True, text=True, check=True
    ).stdout.strip()


def someone_else_pushes(tmp_path: Path, origin: Path) -> str:
    other = Repo(tmp_path / "other")
    subprocess.run(["git", "clone", "-q", str(origin), str(other.path)], check=True)
    sha = other.commit("someone else's work", **{"theirs.txt": "theirs\n"})
    other.git("push", "-q", "origin", "HEAD:main")
    return sha


def test_a_candidate_lands_on_the_remote_only_from_the_tip_it_was_built_on(
    tmp_path: Path,
) -> None:
    repo, origin = with_origin(tmp_path)
    base = fetch_branch(repo.path, "origin", "main")
    candidate = repo.commit("candidate", **{"ours.txt": "ours\n"})
    theirs = someone_else_pushes(tmp_path, origin)
    with pytest.raises(TargetMoved) as moved:
        push_compare_and_swap(repo.path, "origin", "main", candidate, base)
    assert moved.value.actual == theirs and remote_tip(origin) == theirs  # nothing overwritten
    # Rebuilt on the new tip, it lands.
    new_base = fetch_branch(repo.path, "origin", "main")
    assert new_base == theirs
    repo.git("reset", "-q", "--hard", theirs)
    rebuilt = repo.commit("candidate again", **{"ours.txt": "ours\n"})
    push_compare_and_swap(repo.path, "origin", "main", rebuilt, new_base)
    assert remote_tip(origin) == rebuilt
    assert repo.git("rev-parse", "refs/remotes/origin/main") == rebuilt


def test_a_push_the_remote_refuses_says_why_and_changes_nothing(tmp_path: Path) -> None:
    repo, origin = with_origin(tmp_path)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is frozen for the release'\nexit 1\n")
    hook.chmod(0o755)
    base = fetch_branch(repo.path, "origin", "main")
    candidate = repo.commit("candidate", **{"ours.txt": "ours\n"})
    with pytest.raises(PushRefused, match="main is frozen for the release"):
        push_compare_and_swap(repo.path, "origin", "main", candidate, base)
    assert remote_tip(origin) == base


def test_task_branches_are_published_and_follow_rewinds(tmp_path: Path) -> None:
    repo, origin = with_origin(tmp_path)
    repo.git("checkout", "-q", "-b", "sf/t1-x")
    first = repo.commit("work", **{"a.txt": "1\n"})
    push_branch(repo.path, "origin", "sf/t1-x")
    assert remote_tip(origin, "sf/t1-x") == first
    repo.git("reset", "-q", "--hard", "HEAD~1")
    second = repo.commit("work, redone", **{"b.txt": "1\n"})
    repo.git("fetch", "-q", "origin")
    push_branch(repo.path, "origin", "sf/t1-x")
    assert remote_tip(origin, "sf/t1-x") == second


def test_fetching_the_target_waits_out_a_checkout_being_added_to_the_repository(
    tmp_path: Path,
) -> None:
    """A reviewer's or steward's checkout being added while the steward fetches the remote
    target: the fetch tries again instead of failing the round."""
    repo, origin = with_origin(tmp_path)
    theirs = someone_else_pushes(tmp_path, origin)
    with a_worktree_being_added(repo, "_review-1"):
        assert fetch_branch(repo.path, "origin", "main") == theirs
