"""Task clones: they share the repository's objects, commits there never touch the repository's
`.git`, and the orchestrator's own git calls in them ignore what an agent wrote into the clone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest

from conftest_git import (
    Repo,
    a_worktree_being_added,
    checkout_is_exactly,
    isolate_git,
    make_repo,
)
from stoneforge.git.clone_pool import ClonePool
from stoneforge.git.snapshot import list_snapshots
from stoneforge.git.task_clone import (
    commit_leftovers,
    ensure_task_clone,
    is_task_clone,
    publish,
    remove_task_checkout,
    snapshot,
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path, **{"README.md": "hello\n", "src/app.py": "print(1)\n"})


def _tree_state(repo: Repo) -> tuple[str, str, str]:
    """Everything a task must never change in the repository: refs, the main checkout, index."""
    return (
        repo.git("for-each-ref", "--format=%(objectname) %(refname)"),
        repo.git("status", "--porcelain"),
        repo.head("HEAD"),
    )


def test_clone_shares_objects_and_commits_stay_in_the_clone(repo: Repo) -> None:
    tip = repo.commit("main moves", **{"src/app.py": "print(2)\n"})
    path = repo.path / ".stoneforge" / "worktrees" / "t-1-task"
    co = ensure_task_clone(repo.path, path, "sf/t-1-task", start_point="main")
    assert co.created and co.is_clone and co.head == tip
    clone = Repo(path)
    assert clone.git("symbolic-ref", "HEAD") == "refs/heads/sf/t-1-task"
    assert (path / "src" / "app.py").read_text() == "print(2)\n"
    # No objects were copied: they are read through alternates; only refs of its own.
    alternates = (path / ".git" / "objects" / "info" / "alternates").read_text().strip()
    assert Path(alternates) == (repo.path / ".git" / "objects").resolve()
    assert clone.git("count-objects").startswith("0 objects")
    assert clone.git("remote") == ""
    assert clone.git("for-each-ref", "--format=%(refname)").split() == [
        "refs/heads/main",
        "refs/heads/sf/t-1-task",
    ]
    before = _tree_state(repo)
    objects_before = repo.git("count-objects", "-v")
    clone.commit("agent work", **{"new.txt": "new\n"})
    # The commit wrote only into the clone: the repository's refs and objects are as they were.
    assert _tree_state(repo) == before
    assert repo.git("count-objects", "-v") == objects_before
    assert repo.git("branch", "--list", "sf/t-1-task") == ""
    published = publish(repo.path, path, "sf/t-1-task", "t-1")
    assert published.head == clone.head() and published.refs == ["refs/heads/sf/t-1-task"]
    assert repo.show("sf/t-1-task", "new.txt") == "new"
    assert repo.head("main") == tip


def test_a_later_attempt_continues_the_published_branch(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "wt" / "t-2"
    ensure_task_clone(repo.path, path, "sf/t-2", start_point="main")
    work = Repo(path).commit("first attempt", **{"a.txt": "a\n"})
    publish(repo.path, path, "sf/t-2", "t-2")
    again = ensure_task_clone(repo.path, path, "sf/t-2", start_point="main")
    assert not again.created and again.head == work
    # The clone is gone (a new machine, a cleaned directory): it is made again from the branch.
    remove_dir(path)
    fresh = ensure_task_clone(repo.path, path, "sf/t-2", start_point="main")
    assert fresh.created and fresh.head == work and (path / "a.txt").read_text() == "a\n"


def remove_dir(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def test_pool_hands_out_a_prepared_clone_at_the_new_tip(repo: Repo, tmp_path: Path) -> None:
    pool = ClonePool(repo.path, tmp_path / "wt" / ".pool", "main", size=1)
    pool.refill(wait=True)
    assert len(pool.ready()) == 1
    tip = repo.commit("main moves after the pool was filled", **{"src/app.py": "print(3)\n"})
    path = tmp_path / "wt" / "t-3"
    co = ensure_task_clone(repo.path, path, "sf/t-3", start_point="main", pool=pool)
    assert co.from_pool and co.head == tip
    assert (path / "src" / "app.py").read_text() == "print(3)\n"
    assert Repo(path).git("status", "--porcelain", "--untracked-files=all") == ""
    pool.refill(wait=True)
    assert len(pool.ready()) == 1  # refilled


def test_orchestrator_git_in_a_clone_ignores_what_the_agent_configured(
    repo: Repo, tmp_path: Path
) -> None:
    path = tmp_path / "wt" / "t-4"
    ensure_task_clone(repo.path, path, "sf/t-4", start_point="main")
    ran = tmp_path / "ran.log"
    evil = f"#!/bin/sh\necho ran >> {ran}\n"
    # What an agent could write inside its own clone: hooks, a hooks path, an fsmonitor, and a
    # `commondir` sending git to a config of its own.
    hooks = path / ".git" / "hooks"
    for name in ("post-commit", "pre-commit", "post-checkout"):
        (hooks / name).write_text(evil)
        (hooks / name).chmod(0o755)
    script = path / "evil.sh"
    script.write_text(evil)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    Repo(path).git("config", "core.fsmonitor", str(script))
    Repo(path).git("config", "core.hooksPath", str(hooks))
    other = path / "other-git"
    other.mkdir()
    (other / "config").write_text(f"[core]\n\tfsmonitor = {script}\n")
    (path / ".git" / "commondir").write_text(str(other))
    (path / "work.txt").write_text("left uncommitted\n")
    commit = commit_leftovers(repo.path, path, "leftovers")
    assert commit is not None
    (path / "more.txt").write_text("more\n")
    snap = snapshot(repo.path, path, "t-4")
    assert snap is not None
    assert not ran.exists(), ran.read_text()
    assert not (path / ".git" / "commondir").exists()
    # The snapshot was published into the repository with the task's branch.
    assert [s.ref for s in list_snapshots(repo.path, "t-4")] == [snap.ref]
    assert repo.show("sf/t-4", "work.txt") == "left uncommitted"


def test_resealing_replaces_a_symlinked_config_and_never_writes_through_it(
    repo: Repo, tmp_path: Path
) -> None:
    path = tmp_path / "wt" / "t-4s"
    ensure_task_clone(repo.path, path, "sf/t-4s", start_point="main")
    config = path / ".git" / "config"
    outside = tmp_path / "someone-elses.conf"
    theirs = config.read_text() + "[user]\n\tname = not the clone's\n"
    outside.write_text(theirs)
    config.unlink()
    config.symlink_to(outside)  # what an agent could do inside its own clone
    again = ensure_task_clone(repo.path, path, "sf/t-4s", start_point="main")
    assert not again.created
    assert outside.read_text() == theirs
    assert not config.is_symlink() and "[stoneforge]" in config.read_text()


def test_remove_keeps_unmerged_branch_and_deletes_merged(repo: Repo, tmp_path: Path) -> None:
    path = tmp_path / "wt" / "t-5"
    ensure_task_clone(repo.path, path, "sf/t-5", start_point="main")
    Repo(path).commit("work", **{"b.txt": "b\n"})
    reason = remove_task_checkout(repo.path, path, "t-5", target="main")
    assert not path.exists() and "kept" in reason
    assert repo.show("sf/t-5", "b.txt") == "b"  # published on the way out
    repo.git("merge", "-q", "--ff-only", "sf/t-5")
    path2 = tmp_path / "wt" / "t-5b"
    ensure_task_clone(repo.path, path2, "sf/t-5", start_point="main")
    assert "deleted" in remove_task_checkout(repo.path, path2, "t-5", target="main")
    assert repo.git("branch", "--list", "sf/t-5") == ""


def test_is_task_clone_rejects_worktrees_and_symlinked_git(repo: Repo, tmp_path: Path) -> None:
    wt = tmp_path / "linked"
    repo.git("worktree", "add", "-q", "-b", "sf/x", str(wt))
    assert not is_task_clone(wt) and not is_task_clone(repo.path)
    path = tmp_path / "wt" / "t-6"
    ensure_task_clone(repo.path, path, "sf/t-6", start_point="main")
    assert is_task_clone(path)
    os.rename(path / ".git", path / "git-moved")
    os.symlink(path / "git-moved", path / ".git")
    assert not is_task_clone(path)


def test_hooks_run_by_our_git_calls_never_see_credentials(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook_env.py repro: a husky-style hooks path in the repository, a key in our env."""
    from stoneforge.git.snapshot import commit_all
    from stoneforge.git.worktrees import checkout_detached
    from stoneforge.orchestrator.checks import run_check

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-HOOKS-MUST-NOT-SEE-THIS")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_hooks_must_not_see_this_either")
    log = tmp_path / "hook.log"
    hooks = repo.path / ".hooks"
    hooks.mkdir()
    for name in ("post-checkout", "post-commit"):
        (hooks / name).write_text(
            f'#!/bin/sh\necho "{name}: ${{ANTHROPIC_API_KEY:-none}} ${{GITHUB_TOKEN:-none}}"'
            f" >> {log}\n"
        )
        (hooks / name).chmod(0o755)
    repo.git("config", "core.hooksPath", ".hooks")
    repo.commit("hooks", **{".hooks/.keep": ""})
    log.unlink()  # that commit was the test's own
    steward = checkout_detached(repo.path, repo.path / ".stoneforge" / "worktrees" / "_s", "main")
    checkout_detached(repo.path, steward, "main")
    (steward / "x.txt").write_text("x")
    commit_all(steward, "leftovers", run_hooks=True)
    said = log.read_text().splitlines()
    assert said and all(line.endswith(": none none") for line in said), said
    assert {line.split(":")[0] for line in said} == {"post-checkout", "post-commit"}
    check = anyio.run(
        run_check, "echo ${ANTHROPIC_API_KEY:-none} ${GITHUB_TOKEN:-none}", steward, 10
    )
    assert check.output_tail.strip() == "none none"


def test_sf_inside_a_task_clone_finds_the_repository(repo: Repo, tmp_path: Path) -> None:
    from stoneforge.git.repo import find_repo_root

    path = repo.path / ".stoneforge" / "worktrees" / "t-7"
    ensure_task_clone(repo.path, path, "sf/t-7", start_point="main")
    (path / "src").mkdir(exist_ok=True)
    assert find_repo_root(path / "src") == repo.path.resolve()


def test_a_refill_brings_pool_clones_to_the_new_tip(repo: Repo, tmp_path: Path) -> None:
    pool = ClonePool(repo.path, tmp_path / "wt" / ".pool", "main", size=2)
    pool.refill(wait=True)
    tip = repo.commit("main moves", **{"src/app.py": "print(4)\n"})
    pool.refill(wait=True)
    assert [Repo(p).head() for p in pool.ready()] == [tip, tip]
    co = ensure_task_clone(
        repo.path, tmp_path / "wt" / "t-8", "sf/t-8", start_point="main", pool=pool
    )
    assert co.from_pool and co.head == tip
    assert Repo(co.path).git("symbolic-ref", "HEAD") == "refs/heads/sf/t-8"
    assert (co.path / "src" / "app.py").read_text() == "print(4)\n"
    assert Repo(co.path).git("status", "--porcelain") == ""


def test_a_stale_pool_clone_follows_the_target_writing_only_what_changed(
    repo: Repo, tmp_path: Path
) -> None:
    pool = ClonePool(repo.path, tmp_path / "wt" / ".pool", "main", size=1)
    pool.refill(wait=True)
    [prepared] = pool.ready()
    untouched = (prepared / "README.md").stat()
    pool.size = 0  # no refresh: the take itself must bring it to the new tip
    tip = repo.commit("main moves", **{"src/app.py": "print(5)\n", "src/new.py": "x = 1\n"})
    co = ensure_task_clone(
        repo.path, tmp_path / "wt" / "t-9", "sf/t-9", start_point="main", pool=pool
    )
    assert co.from_pool and co.head == tip and co.base == tip
    clone = Repo(co.path)
    assert clone.git("symbolic-ref", "HEAD") == "refs/heads/sf/t-9"
    assert clone.head("main") == tip and clone.git("status", "--porcelain") == ""
    assert (co.path / "src" / "new.py").read_text() == "x = 1\n"
    after = (co.path / "README.md").stat()
    assert (after.st_ino, after.st_mtime_ns) == (untouched.st_ino, untouched.st_mtime_ns)


def test_a_take_cut_short_leaves_no_checkout_without_its_branch(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatch killed while making a pool clone the task's checkout (here: its refs could
    not be written) leaves nothing at the task's path; the next attempt gets a whole checkout
    on its branch, not a detached clone whose branch was never made."""
    from stoneforge.git import task_clone

    pool = ClonePool(repo.path, tmp_path / "wt" / ".pool", "main", size=1)
    pool.refill(wait=True)
    pool.size = 0  # nothing refills behind the take
    path = tmp_path / "wt" / "t-4"

    def killed(clone: Path, refs: dict[str | None, str]) -> None:
        raise KeyboardInterrupt("killed half-way")

    monkeypatch.setattr(task_clone, "_write_new_refs", killed)
    with pytest.raises(KeyboardInterrupt):
        ensure_task_clone(repo.path, path, "sf/t-4", start_point="main", pool=pool)
    assert not path.exists()
    monkeypatch.undo()
    isolate_git(monkeypatch, tmp_path)
    co = ensure_task_clone(repo.path, path, "sf/t-4", start_point="main", pool=pool)
    assert co.created
    assert Repo(path).git("symbolic-ref", "HEAD") == "refs/heads/sf/t-4"


def test_publish_waits_out_a_worktree_being_added_to_the_repository(
    repo: Repo, tmp_path: Path
) -> None:
    """`git worktree add` (a steward's check checkout) first writes a HEAD of all zeros; a
    fetch into the repository at that moment fails its connectivity check ("bad object
    worktrees/.../HEAD"). Publishing tries again instead of failing the agent's attempt."""
    path = tmp_path / "wt" / "t-9"
    ensure_task_clone(repo.path, path, "sf/t-9", start_point="main")
    work = Repo(path).commit("work", **{"c.txt": "c\n"})
    with a_worktree_being_added(repo, "_steward-e9"):
        published = publish(repo.path, path, "sf/t-9", "t-9")
    assert published.head == work and repo.head("sf/t-9") == work


def test_a_new_clone_never_overwrites_the_tasks_earlier_recovery_refs(
    repo: Repo, tmp_path: Path
) -> None:
    """Recovery refs are numbered per task. A clone made again for the task (its old one was
    removed: cancelled and retried, a cleaned directory) numbers its snapshots after the ones
    the repository already keeps, so publishing them loses none."""
    path = tmp_path / "wt" / "t-8"
    ensure_task_clone(repo.path, path, "sf/t-8", start_point="main")
    (path / "first.txt").write_text("first attempt's work\n")
    first = snapshot(repo.path, path, "t-8")
    assert first is not None and first.number == 1
    remove_dir(path)
    ensure_task_clone(repo.path, path, "sf/t-8", start_point="main")
    (path / "second.txt").write_text("second attempt's work\n")
    second = snapshot(repo.path, path, "t-8")
    assert second is not None and second.number == 2
    kept = {s.number: s.commit for s in list_snapshots(repo.path, "t-8")}
    assert kept == {1: first.commit, 2: second.commit}
    assert repo.show(first.ref, "first.txt") == "first attempt's work"


def test_a_pool_prepared_at_a_candidate_hands_out_only_a_tip_that_landed(
    repo: Repo, tmp_path: Path
) -> None:
    """While the merge queue checks a candidate, the pool waits at it (one clone stays at the
    tip); a task still gets exactly the target's tip: the candidate's work only once it landed,
    and never after it was turned down."""
    wt = tmp_path / "wt"
    pool = ClonePool(repo.path, wt / ".pool", "main", size=3)
    base = repo.head()
    repo.branch("cand-1")
    candidate = repo.on_branch("cand-1", "checked by the queue", **{"src/feature.py": "y = 2\n"})
    pool.expect(base, candidate)
    pool.refill(wait=True)
    assert sorted(Repo(p).head() for p in pool.ready()) == sorted([base, candidate, candidate])

    # Not landed yet: both tasks start at the tip, the second from a clone that was at the
    # candidate (nothing refills behind the takes: the take itself must bring it back).
    pool.size = 0
    for n in (1, 2):
        co = ensure_task_clone(repo.path, wt / f"t-{n}", f"sf/t-{n}", start_point="main", pool=pool)
        assert co.from_pool and co.head == base
        checkout_is_exactly(co.path, base)
        assert not (co.path / "src" / "feature.py").exists()

    # Turned down; the target moves on by other hands: clones at the old candidate follow it.
    pool.expect(None, None)
    moved = repo.commit("someone else lands", **{"README.md": "moved\n"})
    for n in (3, 4):
        co = ensure_task_clone(repo.path, wt / f"t-{n}", f"sf/t-{n}", start_point="main", pool=pool)
        assert co.head == moved
        checkout_is_exactly(co.path, moved)

    # A candidate that lands: the clones waiting at it are the new tip.
    repo.branch("cand-2")
    landing = repo.on_branch("cand-2", "lands", **{"src/landed.py": "z = 3\n"})
    pool.size = 3
    pool.expect(moved, landing)
    pool.refill(wait=True)
    repo.git("merge", "-q", "--ff-only", landing)
    for n in (5, 6):
        co = ensure_task_clone(repo.path, wt / f"t-{n}", f"sf/t-{n}", start_point="main", pool=pool)
        assert co.from_pool and co.head == landing
        checkout_is_exactly(co.path, landing)
        assert (co.path / "src" / "landed.py").read_text() == "z = 3\n"
    pool.refill(wait=True)
    assert {Repo(p).head() for p in pool.ready()} == {landing}  # nothing waits ahead any more
