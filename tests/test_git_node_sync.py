"""Work moving between the head's mirror checkout and a node's checkout, only through a bare
remote (git.node_sync): real git, no Ray (the Ray backend's own tests are test_ray_backend.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import git
from stoneforge.git.node_sync import (
    BranchMoved,
    delete_remote_ref,
    node_head,
    node_repository,
    prepare_node_checkout,
    push_node_branch,
    push_session_start,
    push_wip,
    recovery_refs,
    take_node_work,
    wip_ref,
)
from stoneforge.git.task_clone import ensure_task_clone, snapshot

BRANCH = "sf/t1-work"


@pytest.fixture
def setup(repo: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """The repository, the head's task clone (the mirror) on BRANCH, and the remote's URL."""
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(origin)], check=True)
    mirror = ensure_task_clone(repo, tmp_path / "wt" / "t1", BRANCH, start_point="main").path
    return repo, mirror, str(origin)


def _node_checkout(tmp_path: Path, url: str, commit: str, recovery: list[str] = ()) -> Path:
    base = node_repository(tmp_path / "node", url)
    path = tmp_path / "node" / "tasks" / "t1"
    prepare_node_checkout(
        base,
        path,
        url,
        branch=BRANCH,
        commit=commit,
        target="main",
        recovery=list(recovery),
        identity={"user.name": "Node", "user.email": "node@example.com"},
    )
    return path


def test_a_session_round_trip_leaves_the_mirror_as_the_node_left_its_checkout(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _repo, mirror, url = setup
    start = push_session_start(mirror, url, BRANCH)
    node = _node_checkout(tmp_path, url, start)
    assert node_head(node) == (start, True)
    # On the node: one commit (pushed), then uncommitted work: a change, a deletion, a new file.
    (node / "a.txt").write_text("committed\n")
    git(node, "add", "a.txt")
    git(node, "commit", "-qm", "a")
    pushed = push_node_branch(node, url, BRANCH, start)
    (node / "a.txt").write_text("changed\n")
    (node / "README.md").unlink()
    (node / "new.txt").write_text("untracked\n")
    ref = wip_ref("s-1")
    push_wip(node, url, ref, "s-1")

    state = take_node_work(mirror, url, BRANCH, ref)

    assert state.head == pushed and state.files == 3
    assert git(mirror, "rev-parse", "HEAD") == pushed
    assert git(mirror, "symbolic-ref", "--short", "HEAD") == BRANCH
    assert (mirror / "a.txt").read_text() == "changed\n"
    assert not (mirror / "README.md").exists()
    assert (mirror / "new.txt").read_text() == "untracked\n"
    status = git(mirror, "status", "--porcelain").splitlines()  # uncommitted again
    assert sorted(line.strip() for line in status) == ["?? new.txt", "D README.md", "M a.txt"]
    assert git(mirror, "diff", "--cached", "--name-only") == ""  # nothing staged
    delete_remote_ref(mirror, url, ref)  # the head holds it now: gone from the remote
    assert git(Path(url), "for-each-ref", "refs/stoneforge/wip/") == ""


def test_work_in_progress_older_than_the_last_pushed_commit_is_not_laid_on_it(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _repo, mirror, url = setup
    start = push_session_start(mirror, url, BRANCH)
    node = _node_checkout(tmp_path, url, start)
    (node / "a.txt").write_text("draft\n")
    push_wip(node, url, wip_ref("s-1"), "s-1")  # then the draft is committed and pushed
    git(node, "add", "a.txt")
    git(node, "commit", "-qm", "a")
    pushed = push_node_branch(node, url, BRANCH, start)

    state = take_node_work(mirror, url, BRANCH, wip_ref("s-1"))

    assert (state.head, state.wip) == (pushed, None)
    assert git(mirror, "status", "--porcelain") == ""


def test_a_node_the_head_gave_up_on_cannot_push_over_a_later_session(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _repo, mirror, url = setup
    start = push_session_start(mirror, url, BRANCH)
    zombie = _node_checkout(tmp_path, url, start)
    # The head re-dispatched the task; that session pushed a commit of its own.
    (mirror / "later.txt").write_text("later\n")
    git(mirror, "add", "later.txt")
    git(mirror, "commit", "-qm", "later")
    later = push_session_start(mirror, url, BRANCH)
    # The cut-off node comes back with its own commit: refused, the later work stays.
    (zombie / "old.txt").write_text("old\n")
    git(zombie, "add", "old.txt")
    git(zombie, "commit", "-qm", "old")
    with pytest.raises(BranchMoved):
        push_node_branch(zombie, url, BRANCH, start)
    assert git(Path(url), "rev-parse", f"refs/heads/{BRANCH}") == later


def test_the_session_start_keeps_commits_a_lost_node_pushed_that_the_head_never_fetched(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _repo, mirror, url = setup
    start = push_session_start(mirror, url, BRANCH)
    node = _node_checkout(tmp_path, url, start)
    (node / "a.txt").write_text("from the node\n")
    git(node, "add", "a.txt")
    git(node, "commit", "-qm", "a")
    pushed = push_node_branch(node, url, BRANCH, start)
    # The head died before it followed; at the next session start the mirror catches up.
    assert push_session_start(mirror, url, BRANCH) == pushed
    assert (mirror / "a.txt").read_text() == "from the node\n"


def test_the_next_node_gets_the_tasks_recovery_refs(
    setup: tuple[Path, Path, str], tmp_path: Path
) -> None:
    repo, mirror, url = setup
    (mirror / "draft.txt").write_text("saved\n")
    saved = snapshot(repo, mirror, "t1")
    assert saved is not None
    start = push_session_start(mirror, url, BRANCH)
    node = _node_checkout(tmp_path, url, start, recovery_refs(mirror))
    assert git(node, "show", f"{saved.ref}:draft.txt") == "saved"
    assert not (node / "draft.txt").exists()
