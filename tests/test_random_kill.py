"""Kill -9 at random: agent CLIs, the steward's agent CLI and the orchestrator itself.

The real `sf serve --until-idle` (a subprocess) runs eight tasks with dependencies on a real
repository; five of them append to one shared file, so their merges conflict and the steward's
conflict-resolving agent runs. Every agent is the real Claude Code CLI against the scripted
endpoint, with the default `maxAttempts`. At seeded random moments the test kills an agent CLI,
the steward's agent CLI or the whole orchestrator (and starts it again), a bounded number of
times. At the end every task is merged exactly once, none failed, nothing is lost, and every
first-parent commit of main passed the checks.

The scripted agents are stateless: each turn is decided from the conversation so far, so a
session started again after a kill does the same work again (idempotently) from the start.
Run with STONEFORGE_KILL_SEED=<n> to replay a seed (timing still varies from run to run).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import git, write_config
from serve_helpers import start_serve
from stoneforge.demo import FakeModel, Step
from stoneforge.demo.recording import RecordedRequest
from stoneforge.models import MergeStatus, SessionRole, SessionStatus, TaskStatus
from stoneforge.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

#: How many kills of each kind one run makes (at most: a kind without a target is skipped).
KILLS = {"worker": 2, "steward": 1, "orchestrator": 1}
#: The whole run must end within this (the test's budget is about three minutes).
DEADLINE_S = 240

# (title, blockers by index, appends to the shared registry)
TASKS: list[tuple[str, tuple[int, ...], bool]] = [
    ("Add alpha", (), True),
    ("Add bravo", (), True),
    ("Add charlie", (0,), False),
    ("Add delta", (0,), True),
    ("Add echo", (), True),
    ("Add foxtrot", (1, 2), False),
    ("Add golf", (4,), True),
    ("Add hotel", (5, 6), False),
]

# The project's check: no conflict markers, no line of the registry twice. It logs every commit
# it judged, so the test can prove main's first-parent line holds only commits that passed.
CHECK_SH = r"""#!/bin/bash
fail=0
if grep -rlE '^(<<<<<<<|>>>>>>>)( |$)|^=======$' --exclude-dir=.git . ; then
  echo "conflict markers"; fail=1
fi
if [ -f registry.txt ] && [ -n "$(sort registry.txt | uniq -d)" ]; then
  echo "a registry line appears twice"; fail=1
fi
if [ $fail = 0 ]; then r=ok; else r=FAIL; fi
echo "$(git rev-parse HEAD) $r" >> "$1"
exit $fail
"""

RESOLVE = r"sed -i -e '/^<<<<<<< /d' -e '/^=======$/d' -e '/^>>>>>>> /d' registry.txt"


def assistant_turns(request: RecordedRequest) -> int:
    return sum(1 for m in request.messages if m.get("role") == "assistant")


def worker_agent(task_id: str, registry: bool, delay_s: float):  # noqa: ANN201
    """A worker that writes its file (and its registry line), then commits; idempotent, so a
    session started again after a kill redoes the same work on whatever the last one left."""
    write = f"mkdir -p tasks && printf 'work of {task_id}\\n' > tasks/{task_id}.txt"
    if registry:
        write += f" && (grep -qx '{task_id}' registry.txt || echo '{task_id}' >> registry.txt)"
    commit = f"git add -A && (git diff --cached --quiet || git commit -q -m 'Work of {task_id}')"

    def decide(request: RecordedRequest) -> Step:
        turn = assistant_turns(request)
        if turn == 0:
            return Step.bash(write, text=f"Working on {task_id}.", delay_s=delay_s)
        if turn == 1:
            return Step.bash(commit, text="Committing.", delay_s=delay_s)
        return Step.say(f"Done with {task_id}.")

    return decide


def steward_agent(request: RecordedRequest) -> Step:
    """Keeps both sides of every registry conflict (the lines are independent)."""
    if assistant_turns(request) == 0:
        return Step.bash(RESOLVE, text="Keeping both sides.", delay_s=1.5)
    return Step.say("Resolved.")


@dataclass
class Killer:
    """Kills at seeded random moments; keeps a log of what it did."""

    repo: Path
    rng: random.Random
    store: Store
    left: dict[str, int] = field(default_factory=lambda: dict(KILLS))
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    next_kill_at: float = 0.0
    steward_seen: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_kill_at = time.monotonic() + self.rng.uniform(4.0, 9.0)

    def say(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f}s {what}"
        self.log.append(line)
        print(line, flush=True)

    def agents(self) -> dict[str, list[int]]:
        """Live processes of each agent session of this repository, by session id."""
        base = f"CLAUDE_CONFIG_DIR={self.repo / '.stoneforge' / 'agents'}/".encode()
        found: dict[str, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for value in (entry / "environ").read_bytes().split(b"\0"):
                    if value.startswith(base):
                        stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                        if stat[0] != "Z":
                            found.setdefault(value[len(base) :].decode(), []).append(
                                int(entry.name)
                            )
        return found

    def role_of(self, session_id: str) -> SessionRole | None:
        with contextlib.suppress(Exception):
            return self.store.get_session(session_id).role
        return None

    def uncommitted(self, session_id: str) -> bool:
        """Whether the session's task checkout holds work not committed yet."""
        with contextlib.suppress(Exception):
            task = self.store.get_task(self.store.get_session(session_id).task_id or "")
            if task.worktree:
                return bool(git(Path(task.worktree), "status", "--porcelain"))
        return False

    def kill_agent(self, session_id: str, pids: list[int], kind: str) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.left[kind.split()[0]] -= 1
        self.say(f"kill -9 {kind} agent of session {session_id} (pids {pids})")

    def step(self, serve: subprocess.Popen[str]) -> bool:
        """One look; True when it killed the orchestrator (the caller starts it again)."""
        now = time.monotonic()
        agents = self.agents()
        roles = {sid: self.role_of(sid) for sid in agents}
        if self.left["steward"] > 0:
            for sid in [s for s, r in roles.items() if r == SessionRole.STEWARD]:
                # Each steward session is killed at a random moment of its life (if it lives
                # that long: the next one then gets a narrower window).
                window = 2.0 if self.steward_seen else 6.0
                at = self.steward_seen.setdefault(sid, now + self.rng.uniform(0.0, window))
                if now >= at:
                    self.kill_agent(sid, agents[sid], "steward")
                    break
        if now < self.next_kill_at:
            return False
        kinds = [k for k in ("worker", "orchestrator") if self.left[k] > 0]
        if not kinds:
            return False
        kind = self.rng.choice(kinds)
        self.next_kill_at = now + self.rng.uniform(5.0, 12.0)
        if kind == "worker":
            workers = sorted(s for s, r in roles.items() if r == SessionRole.WORKER)
            if self.rng.random() < 0.5:  # half the time: one that holds uncommitted work
                workers = [s for s in workers if self.uncommitted(s)]
            if not workers:
                self.next_kill_at = now + 0.5  # none running now: look again soon
                return False
            sid = self.rng.choice(workers)
            dirty = " with uncommitted work" if self.uncommitted(sid) else ""
            self.kill_agent(sid, agents[sid], "worker" + dirty)
            return False
        os.kill(serve.pid, signal.SIGKILL)  # the orchestrator alone: its agents are orphaned
        serve.wait(timeout=30)
        self.left["orchestrator"] -= 1
        self.say(f"kill -9 orchestrator (pid {serve.pid}); its agents run on")
        return True


def test_random_kills_lose_nothing_and_land_every_task_exactly_once(
    initialised: Path, fake_model: FakeModel
) -> None:
    seed = int(os.environ.get("STONEFORGE_KILL_SEED") or random.randrange(1 << 32))
    print(f"random-kill seed: {seed} (replay with STONEFORGE_KILL_SEED={seed})", flush=True)
    rng = random.Random(seed)
    repo = initialised
    (repo / "registry.txt").write_text("registry\n")
    git(repo, "add", "registry.txt")
    git(repo, "commit", "-q", "-m", "registry")
    start = git(repo, "rev-parse", "main")
    check_log = repo.parent / "checks.log"
    check_sh = repo.parent / "check.sh"
    check_sh.write_text(CHECK_SH)
    write_config(
        repo,
        f'orchestrator:\n  retryBackoffS: 0.2\nmerge:\n  checks: ["bash {check_sh} {check_log}"]\n',
    )
    store = Store(repo / ".stoneforge" / "state.db", actor="test")
    ids: list[str] = []
    for title, blockers, registry in TASKS:
        task = store.create_task(title, depends_on=[ids[i] for i in blockers])
        ids.append(task.id)
        fake_model.add_script(
            [worker_agent(task.id, registry, rng.uniform(0.5, 3.0))] * 1000,
            marker=f"Stoneforge task {task.id}:",
        )
    fake_model.add_script([steward_agent] * 1000, marker="The merge of branch `sf/")

    killer = Killer(repo, rng, store)
    runs = 1
    serve = start_serve(repo, fake_model, "--until-idle", "--max-concurrent", "3")
    outputs: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert time.monotonic() < deadline, "\n".join(killer.log + outputs)
            if serve.poll() is not None:
                out, err = serve.communicate()
                outputs.append(f"-- run {runs} exited {serve.returncode}:\n{out}\n{err}")
                assert serve.returncode == 0, "\n".join(killer.log + outputs)
                break
            if killer.step(serve):
                out, err = serve.communicate()
                outputs.append(f"-- run {runs} killed:\n{out}\n{err}")
                runs += 1
                serve = start_serve(repo, fake_model, "--until-idle", "--max-concurrent", "3")
            time.sleep(0.1)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.communicate()
        print("\n".join(outputs[-1:]))
    report = "\n".join([f"seed {seed}", *killer.log, *outputs])

    # Every task merged, exactly once, with one merged merge request; none failed, no fix task.
    tasks = store.list_tasks()
    assert [t.id for t in tasks] == ids, report
    assert all(t.status == TaskStatus.MERGED for t in tasks), (
        [(t.id, t.status.value, t.note) for t in tasks],
        report,
    )
    merged = [mr for mr in store.list_merge_requests() if mr.status == MergeStatus.MERGED]
    assert sorted(mr.task_id for mr in merged) == sorted(ids), report
    subjects = git(repo, "log", "--first-parent", "--format=%s", f"{start}..main")
    for task_id in ids:
        assert subjects.count(f"Merge task {task_id}:") == 1, (task_id, subjects, report)
    # Nothing lost: each task's work is on main, once.
    for task_id in ids:
        assert git(repo, "show", f"main:tasks/{task_id}.txt") == f"work of {task_id}", report
    registry_lines = git(repo, "show", "main:registry.txt").splitlines()
    expected = ["registry"] + [t for (_, _, r), t in zip(TASKS, ids, strict=True) if r]
    assert sorted(registry_lines) == sorted(expected), (registry_lines, report)
    # A dependent landed only after its blockers.
    merged_at = {mr.task_id: mr.merged_at for mr in merged}
    for (_, blockers, _), task_id in zip(TASKS, ids, strict=True):
        for b in blockers:
            assert merged_at[ids[b]] <= merged_at[task_id], (task_id, ids[b], report)
    # Every first-parent commit of main passed the check on exactly that commit.
    passed = {
        line.split()[0] for line in check_log.read_text().splitlines() if line.endswith(" ok")
    }
    line = git(repo, "rev-list", "--first-parent", f"{start}..main").split()
    assert line and all(c in passed for c in line), ([c for c in line if c not in passed], report)
    # Nothing is left running: no session row, no agent process, no lease.
    assert store.list_sessions(status=SessionStatus.RUNNING) == [], report
    assert killer.agents() == {}, report
    assert store.lease_holder("orchestrator") is None, report
    kills = {k: KILLS[k] - n for k, n in killer.left.items()}
    print(f"kills made: {kills}; orchestrator runs: {runs}")
    assert kills["worker"] >= 1 and kills["steward"] == 1 and kills["orchestrator"] == 1, report
    store.close()
