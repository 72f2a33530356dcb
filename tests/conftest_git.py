"""Helpers for the git-layer tests: real repositories in temporary directories.

Not a conftest.py (other suites share tests/); test modules import what they need. Every test
runs with git's global and system config ignored, so a developer's own settings (conflict style,
rerere, default branch) cannot change the outcome.
"""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def isolate_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ignore the global and system git config; give commits a fixed identity."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
        monkeypatch.delenv(key, raising=False)
    for key, value in IDENTITY.items():
        monkeypatch.setenv(key, value)


class Repo:
    """A scratch repository (or one of its worktrees) with terse helpers."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, check: bool = True, input: str | None = None) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout.strip()

    def write(self, rel: str, content: str | bytes) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        return p

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def commit(self, message: str, **files: str | None) -> str:
        """Write (or with None delete) files given as path=content (`__` stands for `/`), commit."""
        for key, content in files.items():
            rel = key.replace("__", "/")
            if content is None:
                self.git("rm", "-q", "--", rel)
            else:
                self.write(rel, content)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev)

    def tree(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", f"{rev}^{{tree}}")

    def show(self, rev: str, rel: str) -> str:
        return self.git("show", f"{rev}:{rel}")

    def branch(self, name: str, start: str = "main") -> None:
        self.git("branch", name, start)

    def on_branch(self, name: str, message: str, **files: str | None) -> str:
        """Commit to `name` without switching the main checkout (via a temporary worktree)."""
        wt = self.path.parent / f".scratch-{name.replace('/', '-')}"
        self.git("worktree", "add", "-q", str(wt), name)
        try:
            return Repo(wt).commit(message, **files)
        finally:
            self.git("worktree", "remove", "--force", str(wt))

    def status(self) -> str:
        return self.git("status", "--porcelain")


def make_repo(tmp_path: Path, name: str = "repo", branch: str = "main", **files: str) -> Repo:
    """`git init -b <branch>` with one commit holding `files` (default: README.md)."""
    path = tmp_path / name
    path.mkdir()
    repo = Repo(path)
    repo.git("init", "-q", "-b", branch)
    repo.git("config", "user.name", "Test")
    repo.git("config", "user.email", "test@example.com")
    repo.commit("initial", **(files or {"README.md": "hello\n"}))
    return repo


def lines(n: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {i}\n" for i in range(1, n + 1))


def checkout_is_exactly(clone: Path, commit: str) -> None:
    """HEAD, index and files of ``clone`` are ``commit``'s and nothing else."""
    co = Repo(clone)
    assert co.head() == commit
    assert co.git("status", "--porcelain", "--untracked-files=all") == ""
    assert co.git("diff", "--cached", "--name-only", commit) == ""
    on_disk = sorted(
        str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    assert on_disk == sorted(co.git("ls-tree", "-r", "--name-only", commit).splitlines())


@contextlib.contextmanager
def a_worktree_being_added(repo: Repo, name: str, *, for_s: float = 0.25) -> Iterator[None]:
    """The moment inside `git worktree add` (a steward's check checkout): the worktree is
    registered and its HEAD is all zeros until git writes the real commit, ``for_s`` seconds
    into the block. A fetch into the repository meanwhile fails ("bad object")."""
    admin = repo.path / ".git" / "worktrees" / name
    admin.mkdir(parents=True)
    (admin / "gitdir").write_text(f"{repo.path.parent / name / '.git'}\n")
    (admin / "commondir").write_text("../..\n")
    (admin / "HEAD").write_text("0" * 40 + "\n")
    plain = subprocess.run(
        ["git", "fetch", "--quiet", "--no-write-fetch-head", "--", str(repo.path), "HEAD"],
        cwd=repo.path,
        capture_output=True,
        text=True,
    )
    assert "bad object" in plain.stderr, plain  # what a single fetch meets now

    def add_finishes() -> None:
        time.sleep(for_s)
        (admin / "HEAD").write_text(repo.head("main") + "\n")

    finisher = threading.Thread(target=add_finishes)
    finisher.start()
    try:
        yield
    finally:
        finisher.join()


def run_git_machine(
    machine: Callable[[Path], RuleBasedStateMachine],
    tmp_path: Path,
    *,
    examples: int,
    steps: int,
) -> None:
    """Run a stateful test whose machine works in a directory of its own per example (real
    repositories are slow: no deadline, no example database)."""
    numbers = itertools.count()
    run_state_machine_as_test(
        lambda: machine(tmp_path / f"ex{next(numbers)}"),
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
