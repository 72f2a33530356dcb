"""Stacked branches in git: the base of a branch stacked on several blockers, a restack that
keeps only the branch's own commits, and a conflicting one that changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest_git import Repo, isolate_git, make_repo
from stoneforge.git.stacking import RestackConflict, keep_work, restack, stack_base
from stoneforge.git.task_clone import ensure_task_clone


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path, **{"README.md": "hello\n", "shared.txt": "a\nb\nc\n"})


def files(repo: Repo, rev: str) -> set[str]:
    return set(repo.git("ls-tree", "-r", "--name-only", rev).split())


def test_several_blockers_merge_into_one_base_and_a_chain_stacks_on_its_top(repo: Repo) -> None:
    repo.branch("sf/t1")
    one = repo.on_branch("sf/t1", "t1", one="1\n")
    repo.branch("sf/t2")
    two = repo.on_branch("sf/t2", "t2", two="2\n")
    base = stack_base(repo.path, "main", [one, two], on_target=False)
    assert {"one", "two", "README.md"} <= files(repo, base)
    repo.git("merge-base", "--is-ancestor", one, base)
    repo.git("merge-base", "--is-ancestor", two, base)
    # t3 on t2, which holds t1: t2's head alone is the base (no merge commit).
    repo.branch("sf/t3", one)
    three = repo.on_branch("sf/t3", "t3", three="3\n")
    assert stack_base(repo.path, "main", [one, three], on_target=False) == three
    # No blocker left in review: the target's tip.
    assert stack_base(repo.path, "main", [], on_target=True) == repo.head("main")


def test_blockers_that_conflict_give_no_base(repo: Repo) -> None:
    repo.branch("sf/t1")
    one = repo.on_branch("sf/t1", "t1", **{"shared.txt": "a\nONE\nc\n"})
    repo.branch("sf/t2")
    two = repo.on_branch("sf/t2", "t2", **{"shared.txt": "a\nTWO\nc\n"})
    with pytest.raises(RestackConflict) as caught:
        stack_base(repo.path, "main", [one, two], on_target=False)
    assert caught.value.files == ["shared.txt"]


def test_a_restack_moves_only_the_branchs_own_commits_onto_the_new_base(
    repo: Repo, tmp_path: Path
) -> None:
    repo.branch("sf/t1")
    old_blocker = repo.on_branch("sf/t1", "t1 first attempt", one="old\n", stale="x\n")
    clone = tmp_path / "t2"
    ensure_task_clone(repo.path, clone, "sf/t2", start_point="main", start_at=old_blocker)
    Repo(clone).commit("t2 work", two="2\n")
    Repo(clone).commit("t2 more", two="2\n2\n")
    # The blocker is redone: its new head drops `stale` and changes `one`.
    new_blocker = repo.on_branch("sf/t1", "t1 redone", one="new\n", stale=None)
    head = restack(repo.path, clone, "sf/t2", "t2", old_base=old_blocker, new_base=new_blocker)
    assert repo.head("sf/t2") == head  # published into the repository
    assert repo.git("rev-list", "--count", f"{new_blocker}..{head}") == "2"
    assert repo.show(head, "one") == "new" and repo.show(head, "two") == "2\n2"
    assert "stale" not in files(repo, head)  # nothing of the replaced blocker work stays


def test_a_conflicting_restack_changes_nothing_and_the_work_can_be_kept(
    repo: Repo, tmp_path: Path
) -> None:
    repo.branch("sf/t1")
    old_blocker = repo.on_branch("sf/t1", "t1", **{"shared.txt": "a\nONE\nc\n"})
    clone = tmp_path / "t2"
    ensure_task_clone(repo.path, clone, "sf/t2", start_point="main", start_at=old_blocker)
    before = Repo(clone).commit("t2 edits the same line", **{"shared.txt": "a\nTWO\nc\n"})
    new_blocker = repo.on_branch("sf/t1", "t1 again", **{"shared.txt": "a\nUNO\nc\n"})
    with pytest.raises(RestackConflict) as caught:
        restack(repo.path, clone, "sf/t2", "t2", old_base=old_blocker, new_base=new_blocker)
    assert caught.value.files == ["shared.txt"]
    assert Repo(clone).head() == before and Repo(clone).status() == ""
    saved = keep_work(repo.path, clone, "sf/t2", "t2")
    assert saved.ref.startswith("refs/stoneforge/recovery/t2/")
    assert repo.show(saved.ref, "shared.txt") == "a\nTWO\nc"
