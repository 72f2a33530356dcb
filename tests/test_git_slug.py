"""Slugs, branch names and worktree paths: safe for any title."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stoneforge.git import UnsafePath, is_valid_ref_name, slugify, task_branch, worktree_path
from stoneforge.git.slug import MAX_SLUG_LENGTH, check_task_id

SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

TITLES = {
    "Fix login bug": "fix-login-bug",
    "  Add   spaces  ": "add-spaces",
    "Café crème brûlée": "cafe-creme-brulee",
    "Ünïcödé Straße": "unicode-strasse",
    "Łódź Ørsted Æsir": "lodz-orsted-aesir",
    "path/to/../../etc/passwd": "path-to-etc-passwd",
    "..": "task",
    "---leading dashes": "leading-dashes",
    "trailing dashes---": "trailing-dashes",
    "ctrl\x00\x07\x1b[31mred\x7f": "ctrl-31mred",
    "HEAD": "head",
    "feature.lock": "feature-lock",
    "a@{1}~^:?*[\\b": "a-1-b",
    "日本語のタイトル": "task",
    "🔥🔥🔥": "task",
    "": "task",
    "   ": "task",
    "Refactor: the `Store` class (v2) -- part #3!": "refactor-the-store-class-v2-part-3",
    "ﬁne ligatures ＦＵＬＬ width": "fine-ligatures-full-width",
}


@pytest.mark.parametrize(("title", "expected"), list(TITLES.items()))
def test_slugify_examples(title: str, expected: str) -> None:
    assert slugify(title) == expected


def test_long_titles_are_capped_on_a_word_boundary() -> None:
    title = "Implement the new conflict forecast pipeline for every branch " * 4
    slug = slugify(title)
    assert len(title) > 200
    assert len(slug) <= MAX_SLUG_LENGTH
    assert slug == "implement-the-new-conflict-forecast"
    assert slugify("x" * 200) == "x" * MAX_SLUG_LENGTH  # no boundary: hard cut


@given(st.text(max_size=300))
@settings(max_examples=400, deadline=None)
def test_any_title_gives_a_valid_slug_and_branch(title: str) -> None:
    slug = slugify(title)
    assert SLUG_RE.match(slug)
    assert 1 <= len(slug) <= MAX_SLUG_LENGTH
    branch = task_branch("t-42", title)
    assert branch == f"sf/t-42-{slug}"
    assert is_valid_ref_name(branch, branch=True)
    assert is_valid_ref_name(f"refs/heads/{branch}")


@given(st.text(max_size=300), st.text(alphabet="abcXYZ019_-.", min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_worktree_path_never_escapes(tmp_path_factory: pytest.TempPathFactory, title, task_id):
    base = tmp_path_factory.getbasetemp() / "wt"
    try:
        path = worktree_path(base, task_id, title)
    except ValueError:
        return  # task id refused up front
    assert path.parent == base.resolve()
    assert path.name == f"{task_id}-{slugify(title)}"


# Names checked against the real `git check-ref-format` (a handful: each one spawns git).
REF_NAMES = [
    "refs/heads/main",
    "refs/heads/sf/t-1-fix",
    "main",
    "a/b",
    "a..b",
    "a/.b",
    "a.lock",
    "a/b.lock/c",
    "a b",
    "a@{b",
    "a/",
    "/a",
    "a//b",
    "a.",
    "a\\b",
    "ab~",
    "a*",
    "a?",
    "a[b",
    "a:b",
    "a^b",
    "a\tb",
    "café/x",
    "x/@",
    "x/-y",
    "refs/stoneforge/recovery/t-1/3",
]


@pytest.mark.parametrize("name", REF_NAMES)
def test_ref_validity_matches_git(name: str) -> None:
    full = subprocess.run(["git", "check-ref-format", name], capture_output=True).returncode == 0
    assert is_valid_ref_name(name) == full
    branch = (
        subprocess.run(
            ["git", "check-ref-format", "--branch", name], capture_output=True
        ).returncode
        == 0
    )
    assert is_valid_ref_name(name, branch=True) == branch


@pytest.mark.parametrize("title", ["Fix: Ünïcode / paths", "..", "-x", "a" * 200, "HEAD.lock"])
def test_task_branches_accepted_by_git(title: str) -> None:
    branch = task_branch("t-7", title)
    proc = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True)
    assert proc.returncode == 0, branch


@pytest.mark.parametrize("bad", ["", "-x", ".x", "../x", "a/b", "a..b", "x.lock", "a b", "é"])
def test_bad_task_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_task_id(bad)
    with pytest.raises(ValueError):
        task_branch(bad, "title")


def test_int_task_ids(tmp_path: Path) -> None:
    assert task_branch(12, "Do it") == "sf/12-do-it"
    assert worktree_path(tmp_path, 12, "Do it") == tmp_path.resolve() / "12-do-it"


def test_worktree_path_refuses_a_symlink_pointing_outside(tmp_path: Path) -> None:
    base = tmp_path / "worktrees"
    base.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (base / "t-1-evil").symlink_to(outside)
    with pytest.raises(UnsafePath):
        worktree_path(base, "t-1", "Evil")


def test_relative_worktree_dir_resolves_inside(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert worktree_path(".stoneforge/worktrees", "t-1", "../../x") == (
        tmp_path.resolve() / ".stoneforge" / "worktrees" / "t-1-x"
    )
