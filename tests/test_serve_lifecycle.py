"""`sf serve`: dispatch order, handoff, crash recovery, restart after SIGKILL, lease, Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import commit_steps, run_serve, start_serve, wait_until
from stoneforge.demo import FakeModel, Step, Usage
from stoneforge.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def configure(repo: Path, extra: str = "") -> None:
    write_config(repo, "orchestrator:\n  retryBackoffS: 0.2\n" + extra + "merge:\n  checks: []\n")


def task_json(sf: SfRunner, task_id: str) -> dict:
    return sf("task", "show", task_id, "--json").json()


def store_of(repo: Path) -> Store:
    return Store(repo / ".stoneforge" / "state.db", actor="test")


def test_dispatch_follows_effective_priority_then_dependencies(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    # Without stacked branches: a dependent waits for its blocker to land (stacking is covered
    # by test_serve_stacking.py).
    configure(initialised, "  stacking: false\n")
    low = sf("task", "create", "--title", "Low", "--priority", "5").stdout.strip()
    base = sf("task", "create", "--title", "Base", "--priority", "4").stdout.strip()
    urgent = sf("task", "create", "--title", "Urgent", "--priority", "2").stdout.strip()
    # Needs Base merged first; its priority 1 makes Base the most urgent ready task.
    top = sf(
        "task", "create", "--title", "Top", "--priority", "1", "--depends-on", base
    ).stdout.strip()
    for task_id in (low, base, urgent, top):
        fake_model.add_script(
            commit_steps(f"{task_id}.txt", f"{task_id}\n", f"Work of {task_id}"),
            marker=f"Stoneforge task {task_id}:",
        )
    code, out, err = run_serve(initialised, fake_model, "--max-concurrent", "1")
    assert code == 0, err
    with store_of(initialised) as store:
        sessions = store.list_sessions()
    order = [s.task_id for s in sessions]
    # Base first (it inherits Top's urgency); while Base waits in the merge queue the free slot
    # goes to the next ready task, Urgent; Top follows once Base is merged; Low comes last.
    assert order == [base, urgent, top, low], out
    # A dependent never starts before its blocker is merged.
    base_merged = task_json(sf, base)["mergeRequest"]["mergedAt"]
    top_started = next(s for s in sessions if s.task_id == top).started_at
    assert top_started.isoformat() >= base_merged.replace("Z", "+00:00")


def test_context_threshold_causes_a_handoff_and_a_fresh_session_finishes(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    task_id = sf("task", "create", "--title", "Big refactor").stdout.strip()
    # The continuation script is added first: its marker is the more specific route.
    fake_model.add_script(
        [
            Step.write("part2.py", "PART = 2\n"),
            Step.bash("git add -A && git commit -q -m 'Part 2'"),
            Step.mcp("complete_task", summary="Both parts done"),
            Step.say("Finished after the handoff."),
        ],
        marker="Handoff from the previous session",
    )

    def answer_handoff_request(request: object) -> Step:
        if "context is nearly full" in getattr(request, "all_text", ""):
            return Step.mcp(
                "handoff",
                done="Part 1 is written and committed",
                remaining="Part 2",
                filesTouched=["part1.py"],
                decisions=["split the work in two files"],
                failingTests=[],
                nextStep="Write part2.py",
            )
        return Step.say("Still working.")

    fake_model.add_script(
        [
            Step.write("part1.py", "PART = 1\n"),
            Step.bash(
                "git add -A && git commit -q -m 'Part 1'",
                usage=Usage(input_tokens=2_000, cache_read_input_tokens=148_000, output_tokens=50),
            ),
            answer_handoff_request,
            Step.say("Handed off."),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "merged"
    first, second = task["sessions"]
    assert first["status"] == "handed_off"
    with store_of(initialised) as store:
        [asked] = [e for e in store.events_since(0) if e.kind == "session.handoff_requested"]
    assert asked.entity_id == first["id"] and asked.data["contextTokens"] == 150_000
    assert second["status"] == "completed"
    [handoff] = task["handoffs"]
    assert handoff["done"] == "Part 1 is written and committed"
    assert handoff["nextStep"] == "Write part2.py" and handoff["filesTouched"] == ["part1.py"]
    assert handoff["commit"]  # the branch head when it handed off
    # The second session was told what the first did.
    continuation = fake_model.main_requests("Handoff from the previous session")[0]
    assert "Write part2.py" in continuation.first_user_text
    assert git(initialised, "show", "main:part1.py") == "PART = 1"
    assert git(initialised, "show", "main:part2.py") == "PART = 2"


def test_killed_cli_leaves_a_recovery_ref_and_a_second_attempt_finishes(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    task_id = sf("task", "create", "--title", "Fragile").stdout.strip()
    fake_model.add_script(
        [
            Step.bash("git checkout -q refs/stoneforge/recovery/t1/1 -- wip.txt"),
            Step.bash("git add -A && git commit -q -m 'Finish with recovered work'"),
            Step.say("Recovered and finished."),
        ],
        marker="refs/stoneforge/recovery/t1/1",
    )
    fake_model.add_script(
        [
            Step.write("done.txt", "committed before the crash\n"),
            Step.bash("git add -A && git commit -q -m 'First part'"),
            Step.write("wip.txt", "uncommitted at the crash\n"),
            Step(text="Thinking...", delay_s=60),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    proc = start_serve(initialised, fake_model, "--until-idle")
    try:
        store = store_of(initialised)

        def running_pid() -> int | None:
            sessions = store.list_sessions(task_id=task_id)
            if (
                sessions
                and sessions[0].pid
                and Path(task_json(sf, task_id)["worktree"] or "/nonexistent", "wip.txt").exists()
            ):
                return sessions[0].pid
            return None

        assert wait_until(lambda: running_pid() is not None, timeout=60)
        os.kill(running_pid(), signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "merged" and task["attempts"] == 2
    crashed, finished = task["sessions"]
    assert crashed["status"] == "crashed" and finished["status"] == "completed"
    assert git(initialised, "show", "refs/stoneforge/recovery/t1/1:wip.txt") == (
        "uncommitted at the crash"
    )
    assert git(initialised, "show", "main:done.txt") == "committed before the crash"
    assert git(initialised, "show", "main:wip.txt") == "uncommitted at the crash"
    store.close()


def test_orchestrator_killed_and_restarted_finishes_every_task_exactly_once(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    ids = [sf("task", "create", "--title", f"Job {n}").stdout.strip() for n in range(2)]
    for n, task_id in enumerate(ids):
        fake_model.add_script(
            [
                Step.write(f"{task_id}.txt", f"job {n}\n"),
                Step.bash(f"git add -A && git commit -q -m 'Job {n}'"),
                Step.write(f"{task_id}-wip.txt", "unsaved\n"),
                Step(text="Thinking...", delay_s=60),
            ],
            marker=f"Stoneforge task {task_id}:",
            name=f"first-{task_id}",
        )
    first = start_serve(initialised, fake_model)
    store = store_of(initialised)
    try:
        assert wait_until(
            lambda: all(
                (Path(p) / f"{t}-wip.txt").exists()
                for t in ids
                for p in [task_json(sf, t)["worktree"] or "/nonexistent"]
            ),
            timeout=60,
        )
        orphan_pids = [s.pid for s in store.list_sessions() if s.pid]
        assert len(orphan_pids) == 2
        os.kill(first.pid, signal.SIGKILL)  # the orchestrator alone: its agents are orphaned
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    # The restarted orchestrator's sessions get a note about the dead one.
    fake_model.scripts.clear()
    for task_id in ids:
        fake_model.add_script(
            [
                Step.bash("git add -A && git commit -q -m 'Finish after restart' || true"),
                Step.mcp("complete_task", summary=f"{task_id} finished after a restart"),
                Step.say("Done."),
            ],
            marker=f"Stoneforge task {task_id}:",
            name=f"second-{task_id}",
        )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    for pid in orphan_pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    merges = git(initialised, "log", "--first-parent", "--format=%s", "main").splitlines()
    for n, task_id in enumerate(ids):
        task = task_json(sf, task_id)
        assert task["status"] == "merged"
        assert [s["status"] for s in task["sessions"]] == ["crashed", "completed"]
        assert "died" in task["sessions"][0]["error"]
        assert sum(f"Merge task {task_id}:" in m for m in merges) == 1  # landed exactly once
        assert git(initialised, "show", f"main:{task_id}.txt") == f"job {n}"
        assert len(store.list_merge_requests()) == 2
    store.close()


def test_a_second_serve_is_refused_and_ctrl_c_leaves_a_consistent_store(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    task_id = sf("task", "create", "--title", "Long job").stdout.strip()
    fake_model.add_script(
        [
            Step.write("long.txt", "half done\n"),
            Step(text="Thinking hard...", delay_s=60),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    first = start_serve(initialised, fake_model)
    try:
        store = store_of(initialised)
        assert wait_until(lambda: any(s.pid for s in store.list_sessions()), timeout=60)
        second = sf("serve", "--until-idle", check=False)
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stderr and "already running" in second.stderr
        # Ctrl-C: the terminal signals the whole foreground process group.
        worktree = Path(task_json(sf, task_id)["worktree"])
        assert wait_until(lambda: (worktree / "long.txt").exists(), timeout=30)
        os.killpg(first.pid, signal.SIGINT)
        first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode in (0, 130)
    task = task_json(sf, task_id)
    assert task["status"] == "open"  # back in the queue
    assert all(s["status"] != "running" for s in task["sessions"])
    assert store.lease_holder("orchestrator") is None
    # Nothing is lost: the half-done file is on the branch or in a recovery ref.
    saved = git(initialised, "log", "--all", "--format=%H", "--", "long.txt").split()
    assert saved, "the uncommitted work was lost"
    store.close()


def test_an_internal_error_is_not_counted_as_the_tasks_attempt(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    """Publishing the agent's branch fails for a while (git cannot lock the ref: a lock file
    another git process holds). That is Stoneforge's trouble, not the task's: even with
    `maxAttempts: 1` the attempt is given back, the task runs again on its kept work, and lands."""
    write_config(
        initialised,
        "orchestrator:\n  maxAttempts: 1\n  retryBackoffS: 1\nmerge:\n  checks: []\n",
    )
    task_id = sf("task", "create", "--title", "Add a file").stdout.strip()
    locks: list[Path] = []

    def lock_the_branch_then_commit(_request: object) -> Step:
        # From the agent's commit on, the repository's branch ref is locked: the worker cannot
        # publish the commit, nor (at the session's end) the branch.
        with store_of(initialised) as store:
            branch = store.get_task(task_id).branch
        lock = initialised / ".git" / "refs" / "heads" / f"{branch}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
        locks.append(lock)
        return Step.bash("git add -A && git commit -q -m 'Add a file'")

    fake_model.add_script(
        [
            Step.write("added.txt", "added\n", text="Writing added.txt."),
            lock_the_branch_then_commit,  # a factory: runs when its request comes in
            Step.mcp("complete_task", summary="Add a file"),
            Step.say("Done: Add a file."),
            # The second session: the commit is on the branch already.
            Step.mcp("complete_task", summary="Add a file (committed in the first session)"),
            Step.say("Done."),
        ],
        marker=f"Stoneforge task {task_id}:",
    )
    db = initialised / ".stoneforge" / "state.db"

    def unlock_once_requeued() -> None:  # the other git process is done by the retry
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            wait_until(
                lambda: (
                    conn.execute("SELECT 1 FROM events WHERE kind = 'task.requeued'").fetchone()
                    is not None
                ),
                timeout=240,
                interval=0.01,
            )
        for lock in locks:
            lock.unlink(missing_ok=True)

    unlocker = threading.Thread(target=unlock_once_requeued, daemon=True)
    unlocker.start()
    code, out, err = run_serve(initialised, fake_model, timeout=240)
    unlocker.join(timeout=10)

    assert code == 0, err
    task = task_json(sf, task_id)
    assert task["status"] == "merged", out
    assert task["attempts"] == 1  # the failed publish did not spend the only attempt
    assert git(initialised, "show", "main:added.txt") == "added"
    with store_of(initialised) as store:
        sessions = [s for s in store.list_sessions() if s.task_id == task_id]
        notes = [e.data.get("note") or "" for e in store.events_since(0, limit=1000)]
    assert len(sessions) == 2  # the work committed in the first session was kept for the second
    assert any("not counted" in n and "cannot lock ref" in n for n in notes), notes
