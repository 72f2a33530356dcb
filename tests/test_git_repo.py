"""run_git, repository root, git version and target branch resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest_git import isolate_git, make_repo
from stoneforge.git import (
    GitError,
    GitVersionError,
    NotARepository,
    RefNotFound,
    find_repo_root,
    git_version,
    require_git,
    resolve_target_branch,
    run_git,
    worktree_root,
)
from stoneforge.git.repo import check_git, parse_git_version, resolve_commits


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_git(monkeypatch, tmp_path)


def test_git_version_and_requirement() -> None:
    assert git_version() >= (2, 38, 0)
    assert require_git() == git_version()
    with pytest.raises(GitVersionError, match=r"too old: Stoneforge needs git >= 99\.0"):
        require_git((99, 0, 0))


def test_check_git_for_doctor() -> None:
    good = check_git()
    assert good.ok and good.version and good.message.endswith("ok")
    bad = check_git((99, 1, 0))
    assert not bad.ok and bad.minimum == "99.1" and "too old" in bad.message


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("git version 2.39.5", (2, 39, 5)),
        ("git version 2.37.1 (Apple Git-137.1)", (2, 37, 1)),
        ("git version 2.45.1.windows.1", (2, 45, 1)),
        ("git version 2.40", (2, 40, 0)),
    ],
)
def test_parse_git_version(text: str, version: tuple[int, int, int]) -> None:
    assert parse_git_version(text) == version


def test_run_git_error_names_command_exit_code_and_stderr(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    with pytest.raises(GitError) as err:
        run_git(["rev-parse", "--verify", "no-such-branch"], repo.path)
    e = err.value
    assert e.returncode == 128
    assert e.command == ["git", "rev-parse", "--verify", "no-such-branch"]
    assert "fatal" in e.stderr
    assert "`git rev-parse --verify no-such-branch` failed with exit code 128" in str(e)
    assert str(repo.path) in str(e)


def test_run_git_ignores_inherited_repository_variables(tmp_path, monkeypatch) -> None:
    # As inside a git hook of some other repository: GIT_DIR / GIT_INDEX_FILE point elsewhere.
    repo = make_repo(tmp_path)
    other = make_repo(tmp_path, "other")
    monkeypatch.setenv("GIT_DIR", str(other.path / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(other.path / ".git" / "index"))
    out = run_git(["rev-parse", "--show-toplevel"], repo.path).stdout.strip()
    assert Path(out) == repo.path.resolve()


def test_roots_from_subdirectory_and_linked_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, **{"src/a.py": "x\n"})
    assert find_repo_root(repo.path / "src") == repo.path.resolve()
    wt = tmp_path / "linked"
    repo.git("worktree", "add", "-q", "-b", "feature", str(wt))
    assert worktree_root(wt) == wt.resolve()
    assert find_repo_root(wt) == repo.path.resolve()
    with pytest.raises(NotARepository):
        find_repo_root(tmp_path)


def test_target_is_main_when_it_exists(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    repo.git("checkout", "-q", "-b", "feature")
    assert resolve_target_branch(repo.path) == "main"
    assert resolve_target_branch(repo.path, "refs/heads/main") == "main"


def test_target_falls_back_to_master(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, branch="master")
    repo.git("checkout", "-q", "-b", "feature")
    assert resolve_target_branch(repo.path) == "master"


def test_target_falls_back_to_origin_head(tmp_path: Path) -> None:
    upstream = make_repo(tmp_path, "upstream", branch="trunk")
    clone = tmp_path / "clone"
    upstream.git("clone", "-q", str(upstream.path), str(clone))
    run_git(["checkout", "-q", "-b", "feature"], clone)  # so the answer cannot come from HEAD
    assert resolve_target_branch(clone) == "trunk"


def test_target_falls_back_to_the_main_worktree_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, branch="develop")
    assert resolve_target_branch(repo.path) == "develop"


def test_configured_target_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    with pytest.raises(RefNotFound, match="merge.targetBranch is 'release'"):
        resolve_target_branch(repo.path, "release")


def test_no_target_in_an_empty_repository(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.mkdir()
    run_git(["init", "-q", "-b", "main"], path)
    with pytest.raises(RefNotFound, match="no target branch"):
        resolve_target_branch(path)


def test_resolve_commits_in_one_call(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    repo.git("tag", "-a", "-m", "v1", "v1")
    got = resolve_commits(repo.path, ["main", "v1", "nope", "HEAD"])
    assert got == {"main": repo.head(), "v1": repo.head(), "nope": None, "HEAD": repo.head()}
