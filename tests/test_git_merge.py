"""Candidate merge commits, stacking, compare-and-swap landing, checkouts, shared rerere."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from conftest_git import Repo, isolate_git, lines, make_repo
from stoneforge.git import (
    CheckoutDirty,
    NotFastForward,
    StackItem,
    TargetMoved,
    abort_merge,
    build_candidate,
    build_stack,
    enable_shared_rerere,
    land,
    merge_in_worktree,
)
from stoneforge.git import merge as merge_mod

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(
        tmp_path,
        **{
            "f.txt": lines(10),
            "g.txt": lines(10, "g"),
            "old.txt": lines(5, "old"),
            "README": "r\n",
        },
    )


def real_merge_tree(repo: Repo, base: str, branch: str) -> str:
    """Tree of a real `git merge --no-ff` of `branch` into `base`, done in a scratch worktree."""
    wt = repo.path.parent / f"scratch-{next(_counter)}"
    repo.git("worktree", "add", "-q", "--detach", str(wt), base)
    try:
        scratch = Repo(wt)
        scratch.git("merge", "-q", "--no-ff", "--no-edit", branch)
        return scratch.tree()
    finally:
        repo.git("worktree", "remove", "--force", str(wt))


# --- candidates ------------------------------------------------------------------------------

SCENARIOS = {
    "disjoint files": (
        {"g.txt": lines(10, "g") + "main\n"},
        {"new.txt": "new\n"},
    ),
    "same file, different regions": (
        {"f.txt": lines(10).replace("line 2\n", "main 2\n")},
        {"f.txt": lines(10).replace("line 9\n", "branch 9\n")},
    ),
    "rename on the branch, edit on main": (
        {"old.txt": lines(5, "old").replace("old 1\n", "main 1\n")},
        {"old.txt": None, "renamed.txt": lines(5, "old")},
    ),
    "deletion on the branch": (
        {"g.txt": lines(10, "g") + "main\n"},
        {"f.txt": None},
    ),
    "identical additions": (
        {"same.txt": "same\n"},
        {"same.txt": "same\n", "other.txt": "o\n"},
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_candidate_tree_matches_a_real_merge(repo: Repo, scenario: str) -> None:
    main_change, branch_change = SCENARIOS[scenario]
    repo.branch("sf/t-1-task")
    branch_tip = repo.on_branch("sf/t-1-task", "branch work", **branch_change)
    main_tip = repo.commit("main work", **main_change)
    cand = build_candidate(repo.path, "main", "sf/t-1-task", task_id="t-1", title="Do the thing")
    assert cand.clean and cand.commit and not cand.conflicts
    assert cand.tree == real_merge_tree(repo, main_tip, "sf/t-1-task")
    assert repo.tree(cand.commit) == cand.tree
    assert repo.git("rev-list", "--parents", "-n1", cand.commit).split()[1:] == [
        main_tip,
        branch_tip,
    ]
    assert repo.git("log", "-1", "--format=%s", cand.commit) == "Merge task t-1: Do the thing"
    assert repo.head("main") == main_tip  # nothing moved
    assert repo.status() == ""


def test_candidate_when_the_target_has_not_moved_is_still_a_merge(repo: Repo) -> None:
    repo.branch("sf/t-1-x")
    tip = repo.on_branch("sf/t-1-x", "work", **{"new.txt": "n\n"})
    cand = build_candidate(repo.path, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert cand.clean and cand.commit != tip
    assert repo.tree(cand.commit) == repo.tree(tip)


def test_already_merged_branch(repo: Repo) -> None:
    repo.branch("sf/t-1-x")
    cand = build_candidate(repo.path, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert cand.already_merged and cand.commit == repo.head("main")


def test_content_conflict_reports_hunks_with_line_ranges(repo: Repo) -> None:
    repo.branch("sf/t-1-x")
    # The branch also inserts three lines at the top (a clean change): the block moves down in
    # the merged file and in the branch's file, not in main's.
    branch_f = "top 1\ntop 2\ntop 3\n" + lines(10).replace("line 8\n", "branch 8\n")
    repo.on_branch("sf/t-1-x", "branch", **{"f.txt": branch_f})
    repo.commit("main", **{"f.txt": lines(10).replace("line 8\n", "main 8\n")})
    cand = build_candidate(repo.path, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert not cand.clean and cand.commit is None
    assert cand.conflicted_paths == ["f.txt"]
    f = cand.conflicts[0]
    assert f.kinds == ["content"]
    assert [s.stage for s in f.stages] == [1, 2, 3]
    (h,) = f.hunks
    merged = repo.show(cand.tree, "f.txt").splitlines()
    assert merged[h.merged.start - 1].startswith("<<<<<<< ")
    assert merged[h.merged.end - 1].startswith(">>>>>>> ")
    assert (h.merged.start, h.merged.count) == (11, 5)
    assert h.ours_text == "main 8\n" and h.theirs_text == "branch 8\n" and h.base_text is None
    assert (h.ours.start, h.ours.count) == (8, 1)  # line 8 of main's f.txt
    assert (h.theirs.start, h.theirs.count) == (11, 1)  # line 11 of the branch's f.txt
    assert [(r.start, r.count) for r in f.ours_hunks] == [(8, 1)]
    assert [(r.start, r.count) for r in f.theirs_hunks] == [(1, 3), (11, 1)]


def test_diff3_style_gives_the_base_text(repo: Repo) -> None:
    repo.git("config", "merge.conflictStyle", "diff3")
    repo.branch("sf/t-1-x")
    repo.on_branch("sf/t-1-x", "b", **{"f.txt": lines(10).replace("line 3\n", "b 3\n")})
    repo.commit("m", **{"f.txt": lines(10).replace("line 3\n", "m 3\n")})
    cand = build_candidate(repo.path, "main", "sf/t-1-x", task_id="t-1", title="x")
    (h,) = cand.conflicts[0].hunks
    assert (h.ours_text, h.base_text, h.theirs_text) == ("m 3\n", "line 3\n", "b 3\n")
    assert h.merged.count == 7


def test_structural_conflicts_are_named(repo: Repo) -> None:
    repo.branch("sf/t-1-x")
    repo.on_branch(
        "sf/t-1-x",
        "b",
        **{"added.txt": "branch\n", "old.txt": None, "g.txt": lines(10, "g") + "b\n"},
    )
    repo.commit(
        "m", **{"added.txt": "main\n", "old.txt": lines(5, "old") + "main\n", "g.txt": None}
    )
    cand = build_candidate(repo.path, "main", "sf/t-1-x", task_id="t-1", title="x")
    kinds = {c.path: c.kinds for c in cand.conflicts}
    assert kinds == {
        "added.txt": ["add/add"],
        "g.txt": ["modify/delete"],
        "old.txt": ["modify/delete"],
    }
    (h,) = next(c for c in cand.conflicts if c.path == "added.txt").hunks
    assert (h.ours_text, h.theirs_text) == ("main\n", "branch\n")


def test_stacking_builds_a_batch_and_skips_the_conflicting_branch(repo: Repo) -> None:
    for name, change in {
        "sf/a": {"a.txt": "a\n", "f.txt": lines(10).replace("line 1\n", "a 1\n")},
        "sf/c": {"f.txt": lines(10).replace("line 1\n", "c 1\n")},  # conflicts with a
        "sf/b": {"b.txt": "b\n"},
    }.items():
        repo.branch(name)
        repo.on_branch(name, name, **change)
    main_tip = repo.head("main")
    items = [StackItem(task_id=n[-1], title=n, branch=n) for n in ("sf/a", "sf/c", "sf/b")]
    stack = build_stack(repo.path, "main", items)
    assert [m.branch for m in stack.merged] == ["sf/a", "sf/b"]
    assert [c.branch for c in stack.conflicted] == ["sf/c"]
    assert stack.merged[0].base == main_tip
    assert stack.merged[1].base == stack.merged[0].commit  # stacked on the previous candidate
    assert stack.commit == stack.merged[1].commit
    # Same tree as merging a, then b, for real.
    first = repo.head(stack.merged[0].commit)
    assert repo.tree(first) == real_merge_tree(repo, main_tip, "sf/a")
    assert repo.tree(stack.commit) == real_merge_tree(repo, first, "sf/b")


# --- landing ---------------------------------------------------------------------------------


def candidate(repo: Repo, change: dict[str, str | None]) -> tuple[str, str]:
    """(old main tip, candidate commit) for a task branch making `change`."""
    name = f"sf/t-{next(_counter)}-x"
    repo.branch(name)
    repo.on_branch(name, "work", **change)
    cand = build_candidate(repo.path, "main", name, task_id="t", title="x")
    assert cand.commit
    return repo.head("main"), cand.commit


def test_land_fast_forwards_a_clean_user_checkout(repo: Repo) -> None:
    repo.write("untracked-notes.txt", "mine\n")  # untracked and not in the way: fine
    old, new = candidate(repo, {"f.txt": "changed\n", "added.txt": "a\n", "old.txt": None})
    result = land(repo.path, "main", new, old)
    assert result.new == new and result.updated_worktrees == [repo.path.resolve()]
    assert repo.head("main") == new == repo.head()
    assert repo.read("f.txt") == "changed\n" and repo.read("added.txt") == "a\n"
    assert not (repo.path / "old.txt").exists()
    assert repo.status() == "?? untracked-notes.txt"  # index and files follow the new commit
    assert "stoneforge: land" in repo.git("reflog", "-1", "--format=%gs", "main")


def test_land_refuses_when_the_user_checkout_is_dirty(repo: Repo) -> None:
    old, new = candidate(repo, {"added.txt": "a\n"})
    repo.write("README", "user is editing\n")
    with pytest.raises(CheckoutDirty) as err:
        land(repo.path, "main", new, old)
    assert err.value.worktree == repo.path.resolve()
    assert err.value.files == ["README"]
    assert "not landed" in str(err.value) and "README" in str(err.value)
    assert repo.head("main") == old  # not landed
    assert repo.read("README") == "user is editing\n"


def test_land_refuses_when_an_untracked_file_would_be_overwritten(repo: Repo) -> None:
    old, new = candidate(repo, {"added.txt": "from the task\n"})
    repo.write("added.txt", "the user's own file\n")
    with pytest.raises(CheckoutDirty) as err:
        land(repo.path, "main", new, old)
    assert err.value.files == ["added.txt"]
    assert repo.head("main") == old and repo.read("added.txt") == "the user's own file\n"


def _refused_before_the_ref_moved(repo: Repo, old: str, new: str) -> CheckoutDirty:
    """Land, expecting a refusal; prove the ref never moved (no "undo land" in its reflog)."""
    with pytest.raises(CheckoutDirty) as err:
        land(repo.path, "main", new, old)
    assert repo.head("main") == old
    assert "undo land" not in repo.git("reflog", "--format=%gs", "main")
    return err.value


def test_an_untracked_file_where_the_landing_adds_a_directory_blocks_before_the_ref_moves(
    repo: Repo,
) -> None:
    old, new = candidate(repo, {"docs/index.md": "# docs\n", "docs/api/ref.md": "ref\n"})
    repo.write("docs", "the user's scratch notes\n")  # a file named like the new directory
    err = _refused_before_the_ref_moved(repo, old, new)
    assert err.files == ["docs"] and "docs" in str(err)
    assert repo.read("docs") == "the user's scratch notes\n"
    (repo.path / "docs").unlink()
    land(repo.path, "main", new, old)
    assert repo.read("docs/api/ref.md") == "ref\n" and repo.status() == ""


def test_untracked_files_in_a_directory_the_landing_turns_into_a_file_block_it(
    repo: Repo,
) -> None:
    repo.commit("a directory", **{"build/keep.txt": "k\n"})
    old, new = candidate(repo, {"build/keep.txt": None, "build": "now a file\n"})
    repo.write("build/output.o", "the user's build output\n")
    err = _refused_before_the_ref_moved(repo, old, new)
    assert err.files == ["build/output.o"]
    assert repo.read("build/output.o") == "the user's build output\n"


def test_a_tracked_directory_becoming_a_file_lands_on_a_clean_checkout(repo: Repo) -> None:
    repo.commit("a directory", **{"build/keep.txt": "k\n"})
    old, new = candidate(repo, {"build/keep.txt": None, "build": "now a file\n"})
    land(repo.path, "main", new, old)  # nothing of the user's is there: no reason to refuse
    assert repo.read("build") == "now a file\n" and repo.status() == ""


def test_an_ignored_file_in_such_a_directory_blocks_too(repo: Repo) -> None:
    repo.commit("a directory", **{"out/keep.txt": "k\n", ".gitignore": "*.log\n"})
    old, new = candidate(repo, {"out/keep.txt": None, "out": "now a file\n"})
    repo.write("out/run.log", "ignored, but git will not delete it\n")
    err = _refused_before_the_ref_moved(repo, old, new)
    assert err.files == ["out/run.log"]  # git refuses to delete it, so it is named
    (repo.path / "out" / "run.log").unlink()
    land(repo.path, "main", new, old)
    assert repo.read("out") == "now a file\n"


def test_every_blocking_path_is_named_at_once(repo: Repo) -> None:
    old, new = candidate(repo, {"docs/index.md": "d\n", "added.txt": "a\n", "f.txt": "t\n"})
    repo.write("docs", "scratch\n")
    repo.write("added.txt", "mine\n")
    repo.write("README", "editing\n")
    block = merge_mod.checkout_block(repo.path, repo.path, old, new)
    assert block is not None
    assert (block.changed, block.in_the_way) == (["README"], ["added.txt", "docs"])
    assert block.reason == (
        f"{repo.path} has uncommitted changes in README and untracked files in the way of the "
        "landing: added.txt, docs"
    )


def test_a_refusal_only_git_knows_is_still_caught_before_the_ref_moves(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever our listing misses, git's dry run of the same read-tree still refuses first."""
    from stoneforge.git import blockers

    old, new = candidate(repo, {"docs/index.md": "d\n"})
    repo.write("docs", "scratch\n")
    monkeypatch.setattr(blockers, "_in_the_way", lambda *args: [])
    err = _refused_before_the_ref_moved(repo, old, new)
    assert err.files == ["docs"]  # named from git's own message
    assert repo.read("docs") == "scratch\n"
    assert repo.git("status", "--porcelain") == "?? docs"  # the user's index was not touched


def test_land_is_compare_and_swap(repo: Repo) -> None:
    old, new = candidate(repo, {"added.txt": "a\n"})
    moved = repo.commit("someone else landed", **{"README": "moved\n"})
    with pytest.raises(TargetMoved) as err:
        land(repo.path, "main", new, old)
    assert (err.value.expected, err.value.actual) == (old, moved)
    assert repo.head("main") == moved


def test_land_detects_a_move_between_check_and_swap(repo: Repo, monkeypatch) -> None:
    old, new = candidate(repo, {"added.txt": "a\n"})
    repo.git("checkout", "-q", "-b", "user-branch")
    other = repo.commit("concurrent", **{"README": "other\n"})

    def concurrent_land(*args, **kwargs) -> None:
        repo.git("update-ref", "refs/heads/main", other)

    repo.git("checkout", "-q", "main")
    monkeypatch.setattr(merge_mod, "checkout_block", concurrent_land)
    with pytest.raises(TargetMoved) as err:
        land(repo.path, "main", new, old)
    assert err.value.actual == other and repo.head("main") == other


def test_land_undoes_itself_when_the_checkout_changes_during_landing(repo, monkeypatch) -> None:
    old, new = candidate(repo, {"f.txt": "task version\n"})

    def user_edits_meanwhile(*args, **kwargs) -> None:
        repo.write("f.txt", "user edit made after the check\n")

    monkeypatch.setattr(merge_mod, "checkout_block", user_edits_meanwhile)
    with pytest.raises(CheckoutDirty, match="landing was undone") as err:
        land(repo.path, "main", new, old)
    assert err.value.files == ["f.txt"]
    assert repo.head("main") == old
    assert repo.read("f.txt") == "user edit made after the check\n"
    assert repo.git("diff", "--cached", "--name-only") == ""  # index not left half-updated


def test_land_follows_a_checkout_whose_file_was_saved_unchanged_meanwhile(
    repo, monkeypatch
) -> None:
    """A file saved with the same content after the check (an editor's save) has new stat data
    the index does not know: the checkout still follows, nothing is undone."""
    old, new = candidate(repo, {"f.txt": "task version\n"})
    original = repo.read("f.txt")

    def user_saves_meanwhile(*args, **kwargs) -> None:
        path = repo.path / "f.txt"
        path.write_text(original + "\n")  # a different size and time, then the same content
        path.write_text(original)
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))

    monkeypatch.setattr(merge_mod, "checkout_block", user_saves_meanwhile)
    result = land(repo.path, "main", new, old)
    assert result.updated_worktrees == [repo.path]
    assert repo.head("main") == new
    assert repo.read("f.txt") == "task version\n"
    assert repo.git("status", "--porcelain") == ""


def test_land_refuses_a_non_fast_forward(repo: Repo) -> None:
    old = repo.head("main")
    repo.git("checkout", "-q", "-b", "side", "HEAD~0")
    unrelated = repo.commit("side", **{"README": "side\n"})
    repo.git("checkout", "-q", "main")
    repo.commit("main moves", **{"g.txt": "g\n"})
    with pytest.raises(NotFastForward):
        land(repo.path, "main", unrelated, repo.head("main"))
    assert old != repo.head("main")


def test_land_without_a_checkout_and_in_a_linked_worktree(repo: Repo, tmp_path: Path) -> None:
    old, new = candidate(repo, {"added.txt": "a\n"})
    repo.git("checkout", "-q", "--detach")
    result = land(repo.path, "main", new, old)
    assert result.updated_worktrees == [] and repo.head("main") == new
    # Now main is checked out in a linked worktree: that one follows.
    linked = tmp_path / "linked"
    repo.git("worktree", "add", "-q", str(linked), "main")
    old2, new2 = candidate(repo, {"second.txt": "2\n"})
    result = land(repo.path, "main", new2, old2)
    assert result.updated_worktrees == [linked.resolve()]
    assert (linked / "second.txt").read_text() == "2\n" and Repo(linked).status() == ""


# --- rerere ----------------------------------------------------------------------------------


def test_rerere_resolution_is_shared_across_worktrees(repo: Repo, tmp_path: Path) -> None:
    enable_shared_rerere(repo.path)
    repo.branch("sf/t-1-x")
    repo.on_branch("sf/t-1-x", "b", **{"f.txt": lines(10).replace("line 5\n", "branch 5\n")})
    repo.commit("m", **{"f.txt": lines(10).replace("line 5\n", "main 5\n")})
    resolution = lines(10).replace("line 5\n", "main 5 and branch 5\n")

    # Worktree A: a human (or the steward agent) resolves the conflict once.
    a = tmp_path / "steward-a"
    repo.git("worktree", "add", "-q", "--detach", str(a), "main")
    first = merge_in_worktree(a, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert first.commit is None and first.conflicted == ["f.txt"]
    (a / "f.txt").write_text(resolution)
    Repo(a).git("add", "f.txt")
    Repo(a).git("commit", "-q", "--no-edit")
    assert (repo.path / ".git" / "rr-cache").is_dir()  # in the common dir, shared

    # Worktree B: the same conflict is resolved from the cache and committed.
    b = tmp_path / "steward-b"
    repo.git("worktree", "add", "-q", "--detach", str(b), "main")
    second = merge_in_worktree(b, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert second.commit is not None
    assert second.conflicted == [] and second.resolved_by_rerere == ["f.txt"]
    assert repo.show(second.commit, "f.txt") + "\n" == resolution
    assert repo.git("rev-list", "--parents", "-n1", second.commit).split()[1:] == [
        repo.head("main"),
        repo.head("sf/t-1-x"),
    ]


def test_merge_in_worktree_without_rerere_leaves_the_conflict(repo: Repo, tmp_path) -> None:
    repo.branch("sf/t-1-x")
    repo.on_branch("sf/t-1-x", "b", **{"f.txt": "branch\n"})
    repo.commit("m", **{"f.txt": "main\n"})
    wt = tmp_path / "steward"
    repo.git("worktree", "add", "-q", "--detach", str(wt), "main")
    res = merge_in_worktree(wt, "main", "sf/t-1-x", task_id="t-1", title="x")
    assert res.commit is None and res.conflicted == ["f.txt"] and res.resolved_by_rerere == []
    abort_merge(wt)
    assert Repo(wt).status() == ""
    clean = merge_in_worktree(wt, "main", "main", task_id="t-1", title="noop")
    assert clean.commit is not None
