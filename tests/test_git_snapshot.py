"""Recovery snapshots: every uncommitted file saved under a ref, stash untouched, then restored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest_git import Repo, isolate_git, make_repo
from stoneforge.git import (
    WorktreeDirty,
    apply_snapshot,
    commit_all,
    create_task_worktree,
    list_snapshots,
    save_snapshot,
)

FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "src/util.py": "def util(): ...\n",
    "docs/guide.md": "# Guide\n",
    ".gitignore": "*.log\nbuild/\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def task(tmp_path: Path) -> tuple[Repo, Repo]:
    """(main repo, the task's linked worktree) — snapshots are taken in task worktrees."""
    repo = make_repo(tmp_path, **FILES)
    repo.git("stash", "list")  # make sure the command works before we rely on it being empty
    wt = create_task_worktree(
        repo.path, "t-9", "Crashy task", worktree_dir=tmp_path / "wts", target="main"
    )
    work = Repo(wt.path)
    work.commit("agent commit", **{"src/app.py": "print('committed work')\n"})
    return repo, work


def make_mess(work: Repo) -> None:
    work.write("src/app.py", "print('uncommitted edit')\n")  # modified, unstaged
    work.write("src/util.py", "def util(): return 42\n")
    work.git("add", "src/util.py")  # modified, staged
    (work.path / "docs" / "guide.md").unlink()  # deleted
    work.write("notes/todo.txt", "untracked note\n")  # untracked, in a new directory
    work.write("src/new_module.py", "NEW = True\n")  # untracked
    work.write("binary.dat", bytes(range(256)))  # untracked binary
    work.write("debug.log", "ignored\n")  # ignored: neither saved nor removed
    work.write("build/out.o", "ignored too\n")


def test_snapshot_saves_every_change_and_restores_the_worktree(task) -> None:
    repo, work = task
    head = work.head()
    make_mess(work)
    snap = save_snapshot(work.path, "t-9")
    assert snap is not None
    assert snap.ref == "refs/stoneforge/recovery/t-9/1" and snap.number == 1
    assert snap.parent == head
    assert repo.head(snap.ref) == snap.commit
    assert repo.git("rev-parse", f"{snap.ref}^") == head
    saved = {f.path: f.status for f in snap.files}
    assert saved == {
        "src/app.py": "modified",
        "src/util.py": "modified",
        "docs/guide.md": "deleted",
        "notes/todo.txt": "added",
        "src/new_module.py": "added",
        "binary.dat": "added",
    }
    # The ref holds every file with its content; the deleted file is gone from its tree.
    assert repo.show(snap.ref, "src/app.py") == "print('uncommitted edit')"
    assert repo.show(snap.ref, "src/util.py") == "def util(): return 42"
    assert repo.show(snap.ref, "notes/todo.txt") == "untracked note"
    assert repo.show(snap.ref, "src/new_module.py") == "NEW = True"
    binary = subprocess.run(
        ["git", "cat-file", "blob", f"{snap.ref}:binary.dat"], cwd=repo.path, capture_output=True
    ).stdout
    assert binary == bytes(range(256))
    assert repo.git("ls-tree", "-r", "--name-only", snap.ref, "docs") == ""
    assert "debug.log" not in repo.git("ls-tree", "-r", "--name-only", snap.ref)
    # Untouched files are in the snapshot too (it is a full tree), with their committed content.
    assert repo.show(snap.ref, "src/app.py") != repo.show(head, "src/app.py")
    assert repo.show(snap.ref, "README.md") == "hello"
    # The worktree is back at its last commit; ignored files are left alone.
    assert work.status() == ""
    assert work.read("src/app.py") == "print('committed work')\n"
    assert (work.path / "docs" / "guide.md").exists()
    assert not (work.path / "notes").exists()
    assert not (work.path / "binary.dat").exists()
    assert work.read("debug.log") == "ignored\n"
    assert (work.path / "build" / "out.o").exists()
    # The stash list is untouched, in the worktree and in the main repository.
    assert work.git("stash", "list") == "" and repo.git("stash", "list") == ""
    assert repo.git("for-each-ref", "refs/stash") == ""


def test_numbers_increment_and_are_listed(task) -> None:
    repo, work = task
    work.write("a.txt", "one\n")
    first = save_snapshot(work.path, "t-9")
    work.write("a.txt", "two\n")
    second = save_snapshot(work.path, "t-9")
    assert first and second
    assert (first.number, second.number) == (1, 2)
    assert second.ref.endswith("/t-9/2")
    assert repo.show(first.ref, "a.txt") == "one" and repo.show(second.ref, "a.txt") == "two"
    listed = list_snapshots(repo.path, "t-9")
    assert [(s.ref, s.commit) for s in listed] == [
        (first.ref, first.commit),
        (second.ref, second.commit),
    ]
    assert list_snapshots(repo.path) == listed
    assert list_snapshots(repo.path, "t-other") == []


def test_clean_worktree_gives_no_snapshot(task) -> None:
    repo, work = task
    work.write("ignored.log", "x\n")  # ignored files do not count
    assert save_snapshot(work.path, "t-9") is None
    assert list_snapshots(repo.path) == []


def test_the_real_index_is_not_touched_when_not_restoring(task) -> None:
    repo, work = task
    work.write("src/util.py", "staged\n")
    work.git("add", "src/util.py")
    work.write("src/util.py", "staged then edited\n")
    work.write("new.txt", "untracked\n")
    before = work.git("status", "--porcelain")
    snap = save_snapshot(work.path, "t-9", restore=False)
    assert snap is not None and not snap.restored
    assert work.git("status", "--porcelain") == before  # still staged / untracked as before
    assert work.git("show", ":src/util.py") == "staged"
    assert repo.show(snap.ref, "src/util.py") == "staged then edited"
    assert repo.show(snap.ref, "new.txt") == "untracked"


def test_apply_snapshot_brings_the_work_back(task) -> None:
    repo, work = task
    make_mess(work)
    snap = save_snapshot(work.path, "t-9")
    assert snap is not None
    # A later session committed something else in the meantime.
    work.commit("more work", **{"README.md": "hello again\n"})
    assert apply_snapshot(work.path, snap.ref) == []
    assert work.read("src/app.py") == "print('uncommitted edit')\n"
    assert work.read("notes/todo.txt") == "untracked note\n"
    assert not (work.path / "docs" / "guide.md").exists()
    assert work.read("README.md") == "hello again\n"
    assert "?? notes/" in work.status()  # untracked again, not staged
    with pytest.raises(WorktreeDirty):
        apply_snapshot(work.path, snap.ref)


def test_commit_all_commits_leftovers_including_untracked(task) -> None:
    repo, work = task
    assert commit_all(work.path, "nothing") is None
    make_mess(work)
    commit = commit_all(work.path, "Uncommitted work left by the agent")
    assert commit == work.head()
    assert work.git("log", "-1", "--format=%s") == "Uncommitted work left by the agent"
    assert work.status() == ""
    assert repo.show(commit, "notes/todo.txt") == "untracked note"
    names = repo.git("ls-tree", "-r", "--name-only", commit)
    assert "docs/guide.md" not in names and "debug.log" not in names


def test_commit_all_skips_failing_hooks(task) -> None:
    repo, work = task
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    work.write("x.txt", "x\n")
    assert commit_all(work.path, "work") is not None
