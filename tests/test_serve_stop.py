"""Stopping `sf serve`: Ctrl-C while agents start, a steward agent at a clean stop, a forced stop.

The real `sf serve` runs as a subprocess with real Claude Code CLIs against the scripted endpoint.
Signals go to the orchestrator's pid only (as `kill -INT` or an editor would send them), so the
agents do not die of the signal themselves: the orchestrator has to stop them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import claude_agent_sdk
import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import commit_steps, run_serve, start_serve, wait_until
from stoneforge.demo import FakeModel, Step
from stoneforge.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BUNDLED_CLI = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"


def configure(repo: Path, extra: str = "") -> None:
    write_config(repo, "orchestrator:\n  retryBackoffS: 0.2\n" + extra + "merge:\n  checks: []\n")


def store_of(repo: Path) -> Store:
    return Store(repo / ".stoneforge" / "state.db", actor="test")


def agent_processes(repo: Path) -> list[int]:
    """Live processes started for this repository's agent sessions (by their config dir)."""
    marker = f"CLAUDE_CONFIG_DIR={repo / '.stoneforge' / 'agents'}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(v.startswith(marker) for v in (entry / "environ").read_bytes().split(b"\0")):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append(int(entry.name))
    return found


def stop_and_wait(proc: subprocess.Popen[str], limit_s: float) -> tuple[float, str, str]:
    """SIGINT to the orchestrator alone; how long it took to exit (fails past ``limit_s``)."""
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"sf serve still ran {limit_s:g}s after Ctrl-C\nstdout:\n{out}\nstderr:\n{err}"
        ) from None
    return time.monotonic() - started, out, err


def test_ctrl_c_while_agents_start_stops_promptly_and_starts_no_turn(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path
) -> None:
    # A CLI that takes 40 s to come up, as several CLIs starting at once on a busy machine do.
    slow_cli = tmp_path / "slow-claude"
    slow_cli.write_text(f'#!/bin/sh\nsleep 40\nexec {BUNDLED_CLI} "$@"\n')
    slow_cli.chmod(0o755)
    # Uncontained: the test finds the starting CLIs by CLAUDE_CONFIG_DIR in their environment,
    # and under the bubblewrap wrapper it did not see them start (not investigated yet).
    configure(initialised, f"agents:\n  sandbox: off\n  worker:\n    cliPath: {slow_cli}\n")
    ids = [sf("task", "create", "--title", f"Job {n}").stdout.strip() for n in range(3)]
    for task_id in ids:
        fake_model.add_script(
            commit_steps(f"{task_id}.txt", "work\n", f"Work of {task_id}"),
            marker=f"Stoneforge task {task_id}:",
        )
    proc = start_serve(initialised, fake_model, "--max-concurrent", "3")
    store = store_of(initialised)
    try:
        assert wait_until(lambda: len(agent_processes(initialised)) >= 3, timeout=60)
        took, out, err = stop_and_wait(proc, limit_s=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130), err
    assert took < 10, f"stopping took {took:.1f}s"
    assert agent_processes(initialised) == []
    assert fake_model.main_requests() == []  # no agent was given its prompt after the stop
    for task_id in ids:
        task = store.get_task(task_id)
        assert task.status.value == "open" and task.attempts == 0  # the attempt was given back
    assert all(s.status.value != "running" for s in store.list_sessions())
    assert store.lease_holder("orchestrator") is None
    store.close()


SETTINGS = 'COLORS = ["red"]\n'


def test_a_steward_agent_running_at_a_clean_stop_ends_and_its_merge_waits(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    repo = initialised
    (repo / "settings.py").write_text(SETTINGS)
    git(repo, "add", "settings.py")
    git(repo, "commit", "-q", "-m", "settings")
    configure(repo)
    green = sf("task", "create", "--title", "Add green", "--priority", "2").stdout.strip()
    blue = sf("task", "create", "--title", "Add blue").stdout.strip()
    for task_id, colour in ((green, "green"), (blue, "blue")):
        fake_model.add_script(
            [
                Step.bash(f'echo \'COLORS = ["red", "{colour}"]\' > settings.py'),
                Step.bash(f"git add -A && git commit -q -m 'Add {colour}'"),
                Step.say("Done."),
            ],
            marker=f"Stoneforge task {task_id}:",
        )
    # Blue is dispatched only after green landed, so its merge conflicts and the steward's agent
    # is asked to resolve it; it is still thinking when the orchestrator is stopped.
    stuck = fake_model.add_script(
        [Step(text="Thinking about the conflict...", delay_s=120)],
        marker=f"The merge of branch `sf/{blue}-",
    )
    proc = start_serve(repo, fake_model, "--max-concurrent", "1")
    store = store_of(repo)
    try:
        assert wait_until(lambda: bool(fake_model.main_requests(stuck)), timeout=150)
        took, out, err = stop_and_wait(proc, limit_s=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130), err
    assert took < 15, f"stopping took {took:.1f}s"
    sessions = store.list_sessions(task_id=blue)
    assert [(s.role.value, s.status.value) for s in sessions] == [
        ("worker", "completed"),
        ("steward", "failed"),
    ], out
    assert "stopped" in (sessions[1].error or "")
    assert agent_processes(repo) == []
    # A stop is not a verdict on the conflict: no fix task, the merge request still waits.
    assert store.get_task(blue).status.value == "review"
    assert [mr.status.value for mr in store.list_merge_requests() if mr.task_id == blue] == [
        "pending"
    ]
    assert len(store.list_tasks()) == 2
    # The next start resolves it.
    fake_model.add_script(
        [
            Step.bash('echo \'COLORS = ["red", "green", "blue"]\' > settings.py'),
            Step.say("Kept both."),
        ],
        marker=f"The merge of branch `sf/{blue}-",
        name="resolver",
    )
    fake_model.scripts.remove(stuck)
    code, out, err = run_serve(repo, fake_model)
    assert code == 0, err
    assert store.get_task(blue).status.value == "merged", out
    assert git(repo, "show", "main:settings.py") == 'COLORS = ["red", "green", "blue"]'
    store.close()


def test_a_second_ctrl_c_stops_at_once_and_the_next_start_recovers_the_work(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(initialised)
    ids = [sf("task", "create", "--title", f"Long {n}").stdout.strip() for n in range(2)]
    for task_id in ids:
        fake_model.add_script(
            [
                Step.write(f"{task_id}-wip.txt", f"unsaved work of {task_id}\n"),
                Step(text="Thinking hard...", delay_s=120),
            ],
            marker=f"Stoneforge task {task_id}:",
            name=f"first-{task_id}",
        )
    proc = start_serve(initialised, fake_model, "--max-concurrent", "2")
    store = store_of(initialised)
    try:

        def all_wip_written() -> bool:
            tasks = [store.get_task(t) for t in ids]
            return all(
                t.worktree and (Path(t.worktree) / f"{t.id}-wip.txt").exists() for t in tasks
            )

        assert wait_until(all_wip_written, timeout=90)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.05)
        took, out, err = stop_and_wait(proc, limit_s=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took < 2.0, f"a forced stop took {took:.1f}s\n{out}\n{err}"
    assert proc.returncode != 0
    assert agent_processes(initialised) == []
    # The next start recovers whatever the forced stop left; the tasks then finish.
    fake_model.scripts.clear()
    restore = (
        "for f in {t}-wip.txt; do test -f $f || git checkout "
        "$(git for-each-ref --format='%(refname)' refs/stoneforge/recovery/{t}/ | tail -1) -- $f; "
        "done"
    )
    for task_id in ids:
        fake_model.add_script(
            [
                Step.bash(restore.format(t=task_id)),
                Step.bash("git add -A && git commit -q -m 'Finish' || true"),
                Step.mcp("complete_task", summary="finished"),
                Step.say("Done."),
            ],
            marker=f"Stoneforge task {task_id}:",
            name=f"second-{task_id}",
        )
    code, out, err = run_serve(initialised, fake_model)
    assert code == 0, err
    for task_id in ids:
        task = store.get_task(task_id)
        assert task.status.value == "merged", out
        assert task.attempts == 1  # neither stop spent an attempt
        assert git(initialised, "show", f"main:{task_id}-wip.txt") == f"unsaved work of {task_id}"
    store.close()
