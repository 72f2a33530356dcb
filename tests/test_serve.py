"""`sf serve`: parallel workers, dispatch order, handoff, crash recovery, restart, lease, Ctrl-C.

Every test runs the real orchestrator in a subprocess, the real Claude Code CLI per session, and
real git; only the model is scripted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import FAKE_KEY, commit_steps, run_serve
from stoneforge.demo import FakeModel, Step

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def task_json(sf: SfRunner, task_id: str) -> dict:
    return sf("task", "show", task_id, "--json").json()


def configure(repo: Path, extra: str = "") -> None:
    write_config(repo, "orchestrator:\n  retryBackoffS: 0.2\n" + extra + "merge:\n  checks: []\n")


def test_three_tasks_run_in_parallel_and_end_in_review(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    ids = [sf("task", "create", "--title", f"Feature {n}").stdout.strip() for n in range(3)]
    for n, task_id in enumerate(ids):
        fake_model.add_script(
            commit_steps(f"feature_{n}.py", f"VALUE = {n}\n", f"Add feature {n}", delay_s=4.0),
            marker=f"Stoneforge task {task_id}:",
        )
    code, out, err = run_serve(initialised, fake_model, "--max-concurrent", "3")
    assert code == 0, err
    assert fake_model.max_concurrency >= 3  # the three sessions overlapped in time
    merges = git(initialised, "log", "--first-parent", "--format=%s", "main")
    for n, task_id in enumerate(ids):
        task = task_json(sf, task_id)
        assert task["status"] == "merged", task
        assert task["mergeRequest"]["status"] == "merged"
        assert task["sessions"][0]["status"] == "completed"
        assert git(initialised, "show", f"main:feature_{n}.py") == f"VALUE = {n}"
        assert f"Merge task {task_id}: Feature {n}" in merges
        # Merged work leaves no worktree or branch behind.
        assert not Path(task["worktree"]).exists()
        assert task["branch"] not in git(initialised, "branch", "--list")
    assert "dispatched" in out and "landed" in out


def test_uncommitted_work_is_committed_and_no_commit_is_a_failed_attempt(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised, "  maxAttempts: 1\n")
    lazy = sf("task", "create", "--title", "Leaves work uncommitted").stdout.strip()
    idle = sf("task", "create", "--title", "Does nothing").stdout.strip()
    fake_model.add_script(
        [Step.write("notes.txt", "uncommitted\n"), Step.say("Finished.")],
        marker=f"Stoneforge task {lazy}:",
    )
    fake_model.add_script([Step.say("I looked around.")], marker=f"Stoneforge task {idle}:")
    code, _, err = run_serve(initialised, fake_model)
    assert code == 0, err
    done = task_json(sf, lazy)
    assert done["status"] == "merged"
    subjects = git(initialised, "log", "--format=%s", "main")
    assert (
        f"stoneforge: commit work session {done['sessions'][0]['id']} left uncommitted" in subjects
    )
    assert git(initialised, "show", "main:notes.txt") == "uncommitted"
    failed = task_json(sf, idle)
    assert failed["status"] == "failed"
    assert "without any commit" in failed["note"]


def test_api_key_never_reaches_the_store_or_the_output(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    task_id = sf("task", "create", "--title", "Secret-safe").stdout.strip()
    fake_model.add_script(
        [
            Step.bash(
                'echo "key is $ANTHROPIC_API_KEY" > leak.txt && git add -A && git commit -q -m leak'
            ),
            Step.say(f"I will not repeat {FAKE_KEY}."),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    # The model saw the key as its credential (it is the API key) ...
    assert fake_model.requests
    # ... but nothing we wrote keeps it: not the db (with its WAL), not our output.
    assert FAKE_KEY not in out and FAKE_KEY not in err
    for path in (initialised / ".stoneforge").glob("state.db*"):
        assert FAKE_KEY.encode() not in path.read_bytes(), path
    task = task_json(sf, task_id)
    assert FAKE_KEY not in json.dumps(task)
