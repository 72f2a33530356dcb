"""Task worktrees: create from the target tip, idempotent, never lose commits on removal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest_git import Repo, isolate_git, make_repo
from stoneforge.git import (
    UnsafePath,
    WorktreeDirty,
    WorktreeError,
    checkout_detached,
    create_task_worktree,
    delete_branch,
    ensure_worktree,
    list_worktrees,
    remove_worktree,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path, **{"README.md": "hello\n", "src/app.py": "print(1)\n"})


def wt_dir(repo: Repo) -> Path:
    return repo.path / ".stoneforge" / "worktrees"


def test_create_from_current_target_tip(repo: Repo) -> None:
    tip = repo.commit("main moves", **{"src/app.py": "print(2)\n"})
    wt = create_task_worktree(
        repo.path, "t-1", "Fix the app / quickly", worktree_dir=wt_dir(repo), target="main"
    )
    assert wt.created and not wt.reattached
    assert wt.branch == "sf/t-1-fix-the-app-quickly"
    assert wt.path == (wt_dir(repo) / "t-1-fix-the-app-quickly").resolve()
    assert wt.head == tip
    assert (wt.path / "src" / "app.py").read_text() == "print(2)\n"
    assert Repo(wt.path).git("symbolic-ref", "HEAD") == "refs/heads/sf/t-1-fix-the-app-quickly"
    # The branch does not track anything (it was made from a commit, not a remote name).
    assert (
        Repo(wt.path).git("config", "--get", "branch.sf/t-1-fix-the-app-quickly.merge", check=False)
        == ""
    )
    listed = {w.path: w for w in list_worktrees(repo.path)}
    assert listed[wt.path].branch == wt.branch
    assert listed[repo.path.resolve()].branch == "main"


def test_recreate_is_idempotent(repo: Repo) -> None:
    first = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    Repo(first.path).commit("work", **{"new.txt": "work\n"})
    Repo(first.path).write("scratch.txt", "uncommitted\n")
    again = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    assert not again.created
    assert again.path == first.path and again.branch == first.branch
    assert (again.path / "scratch.txt").read_text() == "uncommitted\n"  # untouched
    assert len(list_worktrees(repo.path)) == 2


def test_branch_without_directory_is_reattached(repo: Repo) -> None:
    first = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    work = Repo(first.path).commit("work", **{"new.txt": "work\n"})
    shutil.rmtree(first.path)  # someone deleted the directory by hand
    repo.commit("main moves", **{"other.txt": "x\n"})
    again = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    assert again.created and again.reattached
    assert again.head == work  # the commits of the branch are back, not a fresh branch
    assert (again.path / "new.txt").read_text() == "work\n"


def test_occupied_path_is_refused(repo: Repo) -> None:
    target = wt_dir(repo) / "t-1-task"
    target.mkdir(parents=True)
    (target / "precious.txt").write_text("mine\n")
    with pytest.raises(WorktreeError, match="not empty"):
        create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    assert (target / "precious.txt").read_text() == "mine\n"


def test_branch_checked_out_elsewhere_is_refused(repo: Repo, tmp_path: Path) -> None:
    ensure_worktree(repo.path, tmp_path / "a", "sf/t-1-x", start_point="main")
    with pytest.raises(WorktreeError, match="already checked out"):
        ensure_worktree(repo.path, tmp_path / "b", "sf/t-1-x", start_point="main")


def test_escaping_titles_and_ids_stay_inside(repo: Repo) -> None:
    wt = create_task_worktree(
        repo.path, "t-2", "../../../../tmp/evil", worktree_dir=wt_dir(repo), target="main"
    )
    assert wt.path.parent == wt_dir(repo).resolve()
    with pytest.raises(ValueError):
        create_task_worktree(repo.path, "../t", "x", worktree_dir=wt_dir(repo), target="main")
    evil = wt_dir(repo) / "t-3-link"
    evil.symlink_to(repo.path.parent)
    with pytest.raises(UnsafePath):
        create_task_worktree(repo.path, "t-3", "link", worktree_dir=wt_dir(repo), target="main")


def test_remove_keeps_a_branch_with_unmerged_commits(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    work = Repo(wt.path).commit("work", **{"new.txt": "work\n"})
    result = remove_worktree(repo.path, wt.path, target="main")
    assert result.worktree_removed and not wt.path.exists()
    assert not result.branch_deleted
    assert "not merged" in result.reason
    assert repo.head(wt.branch) == work
    assert len(list_worktrees(repo.path)) == 1
    # Re-creating brings the work back.
    again = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    assert again.reattached and again.head == work


def test_remove_deletes_a_merged_branch(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    Repo(wt.path).commit("work", **{"new.txt": "work\n"})
    repo.git("merge", "-q", "--no-ff", "-m", "merge", wt.branch)
    result = remove_worktree(repo.path, wt.path, target="main")
    assert result.branch_deleted and "merged into main" in result.reason
    assert repo.git("branch", "--list", wt.branch) == ""


def test_forced_branch_deletion_for_a_cancelled_task(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    Repo(wt.path).commit("work", **{"new.txt": "work\n"})
    result = remove_worktree(repo.path, wt.path, target="main", branch_policy="force")
    assert result.branch_deleted
    assert repo.git("branch", "--list", wt.branch) == ""


def test_dirty_worktree_is_not_removed(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    Repo(wt.path).write("untracked.txt", "work in progress\n")
    with pytest.raises(WorktreeDirty) as err:
        remove_worktree(repo.path, wt.path, target="main", branch_policy="force")
    assert err.value.files == ["untracked.txt"]
    assert (wt.path / "untracked.txt").exists()
    assert repo.git("branch", "--list", wt.branch) != ""
    done = remove_worktree(repo.path, wt.path, target="main", discard_changes=True)
    assert done.worktree_removed and not wt.path.exists()


def test_remove_is_idempotent_and_handles_a_vanished_directory(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    shutil.rmtree(wt.path)
    first = remove_worktree(repo.path, wt.path, target="main")
    assert first.worktree_removed and first.branch_deleted  # no commits of its own: merged
    second = remove_worktree(repo.path, wt.path, target="main")
    assert not second.worktree_removed and second.branch is None
    with pytest.raises(WorktreeError, match="main worktree"):
        remove_worktree(repo.path, repo.path, target="main")


def test_delete_branch_refuses_a_checked_out_branch(repo: Repo) -> None:
    wt = create_task_worktree(repo.path, "t-1", "Task", worktree_dir=wt_dir(repo), target="main")
    with pytest.raises(WorktreeError, match="checked out"):
        delete_branch(repo.path, wt.branch, target="main", force=True)
    assert delete_branch(repo.path, "sf/no-such-branch", target="main") is False


def test_steward_scratch_worktree(repo: Repo, tmp_path: Path) -> None:
    first = repo.head()
    path = checkout_detached(repo.path, tmp_path / "steward", first)
    scratch = Repo(path)
    assert scratch.head() == first and scratch.git("branch", "--show-current") == ""
    scratch.write("README.md", "leftover edit\n")
    scratch.write("junk/new.txt", "untracked leftover\n")
    second = repo.commit("main moves", **{"x.txt": "x\n"})
    with pytest.raises(WorktreeDirty):
        checkout_detached(repo.path, path, second, discard_changes=False)
    assert checkout_detached(repo.path, path, second) == path.resolve()
    assert scratch.head() == second and scratch.status() == ""


def test_the_scratch_worktree_keeps_nothing_a_previous_run_left(repo: Repo, tmp_path: Path) -> None:
    # A check's ignored build output (or a nested clone it made) must not reach the next run:
    # otherwise a check that fails on a clean tree passes on the second try.
    repo.commit("ignore build", **{".gitignore": "build/\n*.pyc\n"})
    path = checkout_detached(repo.path, tmp_path / "steward", repo.head())
    scratch = Repo(path)
    scratch.write("build/generated", "made by a failing run\n")
    scratch.write("src/app.pyc", "cache\n")
    scratch.write("vendor/dep/file", "nested\n")
    scratch.git("init", "-q", "vendor/dep")
    assert checkout_detached(repo.path, path, repo.head()) == path.resolve()
    for leftover in ("build", "src/app.pyc", "vendor"):
        assert not (path / leftover).exists(), f"{leftover} survived the reset"
    assert scratch.status() == "" and (path / ".gitignore").is_file()
