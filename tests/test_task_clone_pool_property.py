"""The clone pool under any interleaving of the merge queue's candidates and landings: a task's
checkout is always exactly the target's tip at its dispatch, whatever the pool's clones were
prepared at (the tip, a candidate being checked, one that was turned down or that other hands
overtook), whether or not the pool's filler has caught up."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from conftest_git import Repo, checkout_is_exactly, isolate_git, make_repo, run_git_machine
from stoneforge.git.clone_pool import ClonePool
from stoneforge.git.task_clone import ensure_task_clone


class PoolMachine(RuleBasedStateMachine):
    def __init__(self, root: Path) -> None:
        super().__init__()
        root.mkdir(parents=True)
        self.repo = make_repo(root, **{"README.md": "hello\n", "src/a.py": "a = 0\n"})
        self.repo.git("worktree", "add", "-q", "--detach", str(root / "scratch"))
        self.scratch = Repo(root / "scratch")
        self.wt = root / "wt"
        self.pool = ClonePool(self.repo.path, self.wt / ".pool", "main", size=3)
        self.candidate: tuple[str, str] | None = None  # (base, commit) the queue checks
        self.seq = itertools.count()

    def teardown(self) -> None:
        self.pool.refill(wait=True)  # let the filler finish before the directory goes
        self.pool.stop()

    def _commit_on(self, base: str, path: str, text: str) -> str:
        """A commit on ``base`` that the target does not have (a candidate's or another's)."""
        self.scratch.git("checkout", "-q", "--detach", base)
        return self.scratch.commit(f"change {path}", **{path: text})

    @rule(path=st.sampled_from(["src/a.py", "src/b.py", "docs/c.md", "README.md"]))
    def queue_checks_a_candidate(self, path: str) -> None:
        tip = self.repo.head("main")
        commit = self._commit_on(tip, path, f"candidate {next(self.seq)}\n")
        self.candidate = (tip, commit)
        self.pool.expect(tip, commit)

    @precondition(lambda self: self.candidate is not None)
    @rule()
    def candidate_lands(self) -> None:
        assert self.candidate is not None
        base, commit = self.candidate
        if self.repo.head("main") == base:
            self.repo.git("merge", "-q", "--ff-only", commit)
            self.pool.refill()  # as the landing does
        self.candidate = None

    @precondition(lambda self: self.candidate is not None)
    @rule(forget=st.booleans())
    def candidate_turned_down(self, forget: bool) -> None:
        self.candidate = None
        if forget:  # the round ended (a steward that dies never says so: forget=False)
            self.pool.expect(None, None)

    @rule(path=st.sampled_from(["src/a.py", "src/d.py", "README.md"]), delete=st.booleans())
    def other_hands_move_the_target(self, path: str, delete: bool) -> None:
        exists = (self.repo.path / path).exists()
        self.repo.commit(
            "by hand", **{path: None if delete and exists else f"x {next(self.seq)}\n"}
        )

    @rule()
    def filler_catches_up(self) -> None:
        self.pool.refill(wait=True)

    @rule(keep=st.booleans())
    def task_dispatched(self, keep: bool) -> None:
        n = next(self.seq)
        tip = self.repo.head("main")
        co = ensure_task_clone(
            self.repo.path, self.wt / f"t-{n}", f"sf/t-{n}", start_point="main", pool=self.pool
        )
        assert co.created and co.head == tip and co.base == tip
        checkout_is_exactly(co.path, tip)
        assert Repo(co.path).git("symbolic-ref", "HEAD") == f"refs/heads/sf/t-{n}"
        if not keep:
            shutil.rmtree(co.path)

    @invariant()
    def the_target_moves_only_by_the_tests_hand(self) -> None:
        assert self.repo.status() == ""


def test_pool_checkouts_are_the_tip_under_any_interleaving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_git(monkeypatch, tmp_path)
    run_git_machine(PoolMachine, tmp_path, examples=10, steps=12)
