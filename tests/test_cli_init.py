"""`sf init` inside and outside a repository, and refusing to run on a bad config."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import SfRunner, git


def test_init_creates_config_store_and_ignore_rules(repo: Path, sf: SfRunner) -> None:
    result = sf("init")
    assert ".stoneforge/config.yaml" in result.stdout
    assert (repo / ".stoneforge" / "config.yaml").exists()
    db = repo / ".stoneforge" / "state.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 1
    # Runtime files are ignored, the config is not.
    (repo / ".stoneforge" / "worktrees").mkdir()
    (repo / ".stoneforge" / "worktrees" / "x.txt").write_text("x")
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert ".stoneforge/config.yaml" in status
    assert "state.db" not in status and "worktrees" not in status


def test_init_keeps_an_existing_config(repo: Path, sf: SfRunner) -> None:
    (repo / ".stoneforge").mkdir()
    custom = "orchestrator:\n  maxConcurrent: 2\n"
    (repo / ".stoneforge" / "config.yaml").write_text(custom)
    sf("init")
    assert (repo / ".stoneforge" / "config.yaml").read_text() == custom
    again = sf("init")
    assert "already initialised" in again.stdout


def test_init_outside_a_repository_fails_clearly(tmp_path: Path, sf: SfRunner) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    result = sf("init", cwd=outside, check=False)
    assert result.returncode != 0
    assert "not inside a git repository" in result.stderr
    assert not (outside / ".stoneforge").exists()


def test_commands_before_init_say_to_run_init(repo: Path, sf: SfRunner) -> None:
    result = sf("task", "list", check=False)
    assert result.returncode != 0
    assert "sf init" in result.stderr


def test_bad_config_refuses_and_changes_nothing(initialised: Path, sf: SfRunner) -> None:
    config = initialised / ".stoneforge" / "config.yaml"
    config.write_text("orchestrator:\n  maxConcurent: 3\n")
    db = initialised / ".stoneforge" / "state.db"
    before = db.read_bytes()
    result = sf("task", "create", "--title", "x", check=False)
    assert result.returncode != 0
    assert f"{config}:2" in result.stderr
    assert "orchestrator.maxConcurent" in result.stderr
    assert db.read_bytes() == before
    # init itself refuses too, and leaves the broken file for the user to fix.
    result = sf("init", check=False)
    assert result.returncode != 0 and "maxConcurent" in result.stderr
    assert config.read_text() == "orchestrator:\n  maxConcurent: 3\n"


def test_init_from_a_subdirectory_uses_the_repository_root(repo: Path, sf: SfRunner) -> None:
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    sf("init", cwd=sub)
    assert (repo / ".stoneforge" / "state.db").exists()
    assert not (sub / ".stoneforge").exists()
