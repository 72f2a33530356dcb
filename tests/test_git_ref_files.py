"""Branch tips read from the ref files say what git says, under any sequence of branch updates,
deletions and `git pack-refs`; what the files cannot say for certain is left to git."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from conftest_git import isolate_git, make_repo, run_git_machine
from stoneforge.git.ref_files import branch_commits, read_refs
from stoneforge.git.repo import resolve_commits

BRANCHES = ["main", "sf/t1-a", "sf/t2-b", "feature/x"]
REFS = [f"refs/heads/{name}" for name in [*BRANCHES, "sf/never-made"]]


class RefsMachine(RuleBasedStateMachine):
    def __init__(self, root: Path) -> None:
        super().__init__()
        root.mkdir(parents=True)
        self.repo = make_repo(root, **{"README.md": "hello\n"})
        self.commits = [self.repo.head("main")]
        self.git_dir = self.repo.path / ".git"

    @rule(message=st.sampled_from(["one", "two", "three"]))
    def commit_on_main(self, message: str) -> None:
        self.commits.append(self.repo.commit(message, **{f"{message}.txt": message}))

    @rule(name=st.sampled_from(BRANCHES[1:]), pick=st.integers(min_value=0))
    def point_a_branch(self, name: str, pick: int) -> None:
        self.repo.git("branch", "-f", name, self.commits[pick % len(self.commits)])

    @rule(name=st.sampled_from(BRANCHES[1:]))
    def delete_a_branch(self, name: str) -> None:
        self.repo.git("branch", "-D", name, check=False)

    @rule(prune=st.booleans())
    def pack_refs(self, prune: bool) -> None:
        self.repo.git("pack-refs", "--all", *([] if prune else ["--no-prune"]))

    @invariant()
    def the_files_say_what_git_says(self) -> None:
        from_files = read_refs(self.git_dir, REFS)
        assert from_files is not None  # the files backend, no symbolic refs: always answered
        assert from_files == resolve_commits(self.repo.path, REFS)
        assert branch_commits(self.repo.path, REFS) == from_files


def test_ref_files_agree_with_git_under_any_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_git(monkeypatch, tmp_path)
    run_git_machine(RefsMachine, tmp_path, examples=15, steps=12)


def test_what_the_files_cannot_say_is_left_to_git(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_git(monkeypatch, tmp_path)
    repo = make_repo(tmp_path, **{"README.md": "hello\n"})
    git_dir = repo.path / ".git"
    repo.git("symbolic-ref", "refs/heads/alias", "refs/heads/main")
    assert read_refs(git_dir, ["refs/heads/alias"]) is None
    # Not a full ref name, or one that climbs out of the refs directory.
    assert read_refs(git_dir, ["main"]) is None
    assert read_refs(git_dir, ["refs/heads/../../config"]) is None
    # The symbolic ref still resolves, through git.
    assert branch_commits(repo.path, ["refs/heads/alias"]) == {
        "refs/heads/alias": repo.head("main")
    }
    # A repository on the reftable backend (git 2.45+): git is asked.
    (git_dir / "reftable").mkdir()
    assert read_refs(git_dir, ["refs/heads/main"]) is None
