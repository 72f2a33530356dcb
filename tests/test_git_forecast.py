"""Conflict forecast over all pairs of branches and the target, without any checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_git import Repo, isolate_git, lines, make_repo
from stoneforge.git import Forecast, forecast, format_forecast, merge_tree


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(
        tmp_path,
        **{
            "f.txt": lines(20),
            "g.txt": lines(10, "g"),
            "old.txt": lines(5, "old"),
            "README": "r\n",
        },
    )


def branch(repo: Repo, name: str, **change: str | None) -> str:
    repo.branch(name)
    repo.on_branch(name, name, **change)
    return name


def pair(fc: Forecast, a: str, b: str):
    return next(p for p in fc.pairs if {p.ours, p.theirs} == {a, b})


def test_clean_pairs(repo: Repo) -> None:
    branches = {
        "t1": branch(repo, "sf/t1-a", **{"a.txt": "a\n"}),
        "t2": branch(repo, "sf/t2-b", **{"f.txt": lines(20).replace("line 1\n", "b 1\n")}),
        "t3": branch(repo, "sf/t3-c", **{"f.txt": lines(20).replace("line 20\n", "c 20\n")}),
    }
    fc = forecast(repo.path, "main", branches)
    assert len(fc.pairs) == 6  # 3 against main + 3 among themselves
    assert fc.conflicts == [] and fc.errors == {}
    assert {(p.ours, p.theirs) for p in fc.pairs} == {
        ("main", "t1"),
        ("main", "t2"),
        ("main", "t3"),
        ("t1", "t2"),
        ("t1", "t3"),
        ("t2", "t3"),
    }
    assert "No conflicts expected." in format_forecast(fc)


def test_conflicting_pairs_with_files_and_line_ranges(repo: Repo) -> None:
    branches = {
        # Clean pair first: git 2.39 decides per merge whether to print messages unless told.
        "t0": branch(repo, "sf/t0-clean", **{"zzz.txt": "z\n"}),
        "t1": branch(
            repo,
            "sf/t1-content",
            **{"f.txt": lines(20).replace("line 12\n", "t1 12\nt1 12b\n"), "new.txt": "t1\n"},
        ),
        "t2": branch(
            repo,
            "sf/t2-content",
            **{
                # Three clean lines at the top shift t2's copy of the conflict down by three.
                "f.txt": "top\ntop\ntop\n" + lines(20).replace("line 12\n", "t2 12\n"),
                "new.txt": "t2\n",
            },
        ),
        "t3": branch(repo, "sf/t3-rename", **{"old.txt": None, "moved.txt": lines(5, "old")}),
        "t4": branch(repo, "sf/t4-delete", **{"old.txt": None}),
        "t5": branch(repo, "sf/t5-edit", **{"old.txt": lines(5, "old") + "t5\n"}),
    }
    fc = forecast(repo.path, "main", branches)
    assert len(fc.pairs) == 21
    conflicting = {(p.ours, p.theirs): p for p in fc.conflicts}
    assert set(conflicting) == {("t1", "t2"), ("t3", "t4"), ("t4", "t5")}
    # Rename on one side, edit on the other merges cleanly: git follows the rename.
    assert not pair(fc, "t3", "t5").conflict

    p12 = conflicting[("t1", "t2")]
    files = {f.path: f for f in p12.files}
    assert set(files) == {"f.txt", "new.txt"}
    assert files["new.txt"].kinds == ["add/add"]
    content = files["f.txt"]
    assert content.kinds == ["content"]
    (h,) = content.hunks
    assert (h.merged.start, h.merged.count) == (15, 6)  # markers + 2 lines of t1 + 1 of t2
    assert (h.ours.start, h.ours.count) == (12, 2)  # t1's file: lines 12-13
    assert (h.theirs.start, h.theirs.count) == (15, 1)  # t2's file: line 15
    assert h.ours_text is None  # forecasts carry ranges, not text
    assert [(r.start, r.count) for r in content.ours_hunks] == [(12, 2)]
    assert [(r.start, r.count) for r in content.theirs_hunks] == [(1, 3), (15, 1)]

    assert {f.path: f.kinds for f in conflicting[("t3", "t4")].files} == {
        "moved.txt": ["rename/delete"]
    }
    assert {f.path: f.kinds for f in conflicting[("t4", "t5")].files} == {
        "old.txt": ["modify/delete"]
    }
    assert [(p.ours, p.theirs) for p in fc.conflicts_for("t4")] == [("t3", "t4"), ("t4", "t5")]

    hits = {(h.path, h.other): h for h in fc.hits_for("t2")}
    assert set(hits) == {("f.txt", "t1"), ("new.txt", "t1")}
    assert [(r.start, r.count) for r in hits[("f.txt", "t1")].lines] == [(15, 1)]  # t2's lines
    assert [(r.start, r.count) for r in fc.hits_for("t1")[0].lines] == [(12, 2)]

    text = format_forecast(fc)
    assert "21 pairs checked" in text and "3 would conflict" in text
    assert "t1 <-> t2:" in text
    assert "f.txt lines 12-13 (content)" in text
    assert "new.txt lines 1 (add/add)" in text
    assert "moved.txt (rename/delete)" in text


def test_directory_rename_conflict_without_any_common_path(repo: Repo) -> None:
    # Why there is no "disjoint changed paths cannot conflict" shortcut: here the two branches
    # touch no path in common, yet git reports a conflict (file location).
    repo.commit("dir", **{"d/a": "a\n", "d/b": "b\n"})
    branches = {
        "mv": branch(repo, "sf/mv", **{"d/a": None, "d/b": None, "e/a": "a\n", "e/b": "b\n"}),
        "add": branch(repo, "sf/add", **{"d/new": "new\n"}),
    }
    p = pair(forecast(repo.path, "main", branches), "mv", "add")
    assert p.conflict
    assert {f.path: f.kinds for f in p.files} == {"e/new": ["file location"]}


def test_batch_agrees_with_single_merges(repo: Repo) -> None:
    branches = {
        "a": branch(repo, "sf/a", **{"f.txt": lines(20).replace("line 3\n", "a\n"), "x": "a\n"}),
        "b": branch(repo, "sf/b", **{"f.txt": lines(20).replace("line 3\n", "b\n")}),
        "c": branch(repo, "sf/c", **{"x": "c\n", "g.txt": None}),
        "d": branch(repo, "sf/d", **{"g.txt": lines(10, "g") + "d\n"}),
    }
    repo.commit("main moves", **{"f.txt": lines(20).replace("line 3\n", "main\n")})
    fc = forecast(repo.path, "main", branches)
    refs = {"main": "main", **branches}
    for p in fc.pairs:
        single = merge_tree(repo.path, refs[p.ours], refs[p.theirs], with_hunks=False)
        assert p.conflict == (not single.clean), (p.ours, p.theirs)
        assert sorted(p.paths) == sorted(single.conflicted_paths)
    target_pairs = [(p.ours, p.theirs) for p in fc.conflicts_for("main")]
    assert target_pairs == [("main", "a"), ("main", "b")]  # the target is always "ours"


def test_branch_against_moved_target(repo: Repo) -> None:
    branches = {"t1": branch(repo, "sf/t1", **{"g.txt": lines(10, "g").replace("g 4\n", "t1\n")})}
    repo.commit("main", **{"g.txt": lines(10, "g").replace("g 4\n", "main\n")})
    fc = forecast(repo.path, "main", branches)
    (p,) = fc.conflicts
    assert (p.ours, p.theirs, p.ours_commit) == ("main", "t1", repo.head("main"))
    (h,) = p.files[0].hunks
    assert (h.ours.start, h.ours.count) == (4, 1)


def test_unknown_branches_are_reported_not_fatal(repo: Repo) -> None:
    branches = {"t1": branch(repo, "sf/t1", **{"a": "a\n"}), "gone": "sf/deleted", "main": "main"}
    fc = forecast(repo.path, "main", branches)
    assert [b.label for b in fc.branches] == ["t1"]
    assert set(fc.errors) == {"gone", "main"}
    assert len(fc.pairs) == 1
    assert "gone: left out" in format_forecast(fc)


def test_a_pair_git_cannot_merge_does_not_sink_the_batch(repo: Repo, tmp_path: Path) -> None:
    orphan_repo = make_repo(tmp_path, "other", **{"f.txt": "unrelated\n"})
    repo.git("fetch", "-q", str(orphan_repo.path), "main:orphan")
    branches = {
        "a": branch(repo, "sf/a", **{"g.txt": "a\n"}),
        "b": branch(repo, "sf/b", **{"g.txt": "b\n"}),
        "orphan": "orphan",
    }
    fc = forecast(repo.path, "main", branches)
    assert pair(fc, "a", "b").conflict
    bad = pair(fc, "main", "orphan")
    assert not bad.conflict and "unrelated histories" in (bad.error or "")
    assert "not checked" in format_forecast(fc)


def test_forecast_leaves_no_objects_in_the_repository(repo: Repo) -> None:
    branches = {
        "a": branch(repo, "sf/a", **{"f.txt": lines(20).replace("line 3\n", "a\n")}),
        "b": branch(repo, "sf/b", **{"f.txt": lines(20).replace("line 3\n", "b\n"), "n": "b\n"}),
    }
    before = repo.git("count-objects", "-v")
    fc = forecast(repo.path, "main", branches)
    assert repo.git("count-objects", "-v") == before
    merged = merge_tree(repo.path, "sf/a", "sf/b", with_hunks=False)  # the same merge, for real
    assert repo.git("cat-file", "-t", merged.tree) == "tree"  # ... writes its tree; the
    assert pair(fc, "a", "b").conflict  # forecast computed it without keeping it


def test_json_is_camel_case(repo: Repo) -> None:
    branches = {
        "a": branch(repo, "sf/a", **{"f.txt": lines(20).replace("line 3\n", "a\n")}),
        "b": branch(repo, "sf/b", **{"f.txt": lines(20).replace("line 3\n", "b\n")}),
    }
    data = json.loads(json.dumps(forecast(repo.path, "main", branches).to_json()))
    assert {"target", "targetCommit", "branches", "pairs", "errors", "durationS"} <= set(data)
    p = next(p for p in data["pairs"] if p["conflict"])
    assert {"ours", "theirs", "oursCommit", "theirsCommit", "files", "error"} <= set(p)
    f = p["files"][0]
    assert {"path", "kinds", "hunks", "oursHunks", "theirsHunks", "binary"} <= set(f)
    assert {"merged", "ours", "theirs"} <= set(f["hunks"][0])
    assert Forecast.model_validate(data).pairs[0].ours == "main"


def test_binary_conflict(repo: Repo) -> None:
    branches = {
        "a": branch(repo, "sf/a", **{"img.bin": "\0a\0"}),
        "b": branch(repo, "sf/b", **{"img.bin": "\0b\0"}),
    }
    (p,) = forecast(repo.path, "main", branches).conflicts
    (f,) = p.files
    assert f.binary and f.hunks == [] and "add/add" in f.kinds


def test_forecast_in_a_repository_borrowing_objects(repo: Repo, tmp_path: Path) -> None:
    # `clone --shared`: objects live in another repository (objects/info/alternates); the
    # forecast's temporary object directory must still reach them.
    branch(repo, "sf/a", **{"f.txt": lines(20).replace("line 3\n", "a\n")})
    branch(repo, "sf/b", **{"f.txt": lines(20).replace("line 3\n", "b\n")})
    shared = tmp_path / "shared"
    repo.git("clone", "-q", "--shared", "--no-checkout", str(repo.path), str(shared))
    fc = forecast(shared, "origin/main", {"a": "origin/sf/a", "b": "origin/sf/b"})
    assert [(p.ours, p.theirs) for p in fc.conflicts] == [("a", "b")]
    assert fc.conflicts[0].files[0].hunks[0].ours.start == 3
