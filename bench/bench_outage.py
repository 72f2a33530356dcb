"""How long a provider outage delays the work: 8 tasks, without and with a 60 s outage.

Two runs of the real `sf serve --until-idle` (a subprocess, the real Claude Code CLI per session,
real git, `merge.checks: []`) on the same 8 one-commit tasks, side by side:

- no outage: the scripted endpoint answers every request;
- outage: it answers HTTP 529 to every model request for `--outage` seconds, counted from the
  first model request (so a slow CLI start does not eat the window), then answers again.

The orchestrator runs with its default provider settings (`providerBackoffS: 5`, doubling up to
`providerBackoffMaxS: 300`) unless `--backoff`/`--backoff-max` say otherwise. Each run is timed
from the first dispatch to the last task merged (from the store's event log). The delay is the
difference; ideally the outage plus one probe interval (the probe that finds the API back). Also
printed: the probes the orchestrator made, and the attempts the tasks used (1 each: the outage
spends none). A measurement, not a test: nothing here asserts a time.

    .venv/bin/python bench/bench_outage.py [--tasks 8] [--outage 60] [--max-concurrent 4]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stoneforge.demo import FakeModel, Step
from stoneforge.models import TaskStatus
from stoneforge.service import Service

API_KEY = "sk-ant-bench-not-a-real-key-000000"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stoneforge bench",
    "GIT_AUTHOR_EMAIL": "bench@stoneforge.invalid",
    "GIT_COMMITTER_NAME": "Stoneforge bench",
    "GIT_COMMITTER_EMAIL": "bench@stoneforge.invalid",
}
PROBE_NOTE = re.compile(r"probing the provider|provider unavailable \(|provider available again")


def make_repo(root: Path, tasks: int, model: FakeModel, config: str) -> tuple[Path, list[str]]:
    repo = root / "repo"
    repo.mkdir()
    env = {**os.environ, **GIT_IDENTITY}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True, env=env)
    service, _ = Service.init(repo)
    (repo / ".stoneforge" / "config.yaml").write_text(config)
    ids = []
    for n in range(tasks):
        task = service.store.create_task(f"Feature {n}")
        ids.append(task.id)
        model.add_script(
            [
                Step.write(f"feature_{n}.py", f"VALUE = {n}\n", text="Writing."),
                Step.bash(f"git add -A && git commit -q -m 'Add feature {n}'"),
                Step.mcp("complete_task", summary=f"feature {n}"),
                Step.say("Done."),
            ],
            marker=f"Stoneforge task {task.id}:",
        )
    return repo, ids


def one_run(args: argparse.Namespace, outage_s: float) -> tuple[float, list[str], list[int]]:
    config = (
        f"orchestrator:\n  maxConcurrent: {args.max_concurrent}\n  maxAttempts: 1\n"
        + (f"  providerBackoffS: {args.backoff}\n" if args.backoff else "")
        + (f"  providerBackoffMaxS: {args.backoff_max}\n" if args.backoff_max else "")
        + "merge:\n  checks: []\n"
    )
    with tempfile.TemporaryDirectory(prefix="sf-bench-outage-") as tmp, FakeModel() as model:
        repo, ids = make_repo(Path(tmp), args.tasks, model, config)
        if outage_s:
            model.fail(529, for_s=outage_s, after_s=None)
        # COLUMNS: the orchestrator's plain-text notes are not wrapped at 80 characters.
        env = {**os.environ, **GIT_IDENTITY, **model.env(API_KEY), "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "stoneforge", "serve", "--until-idle"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=outage_s + 900,
        )
        if proc.returncode != 0:
            raise SystemExit(f"sf serve failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        store = Service.open(repo).store
        events = store.events_since(0, limit=100_000)
        dispatched = [e.at for e in events if e.kind == "task.dispatched"]
        merged = [e.at for e in events if e.kind == "task.merged"]
        tasks = [store.get_task(t) for t in ids]
        if any(t.status != TaskStatus.MERGED for t in tasks) or len(merged) != len(ids):
            raise SystemExit(f"not every task merged: {[(t.id, t.status.value) for t in tasks]}")
        elapsed = (max(merged) - min(dispatched)).total_seconds()
        probes = [line for line in proc.stdout.splitlines() if PROBE_NOTE.search(line)]
        return elapsed, probes, [t.attempts for t in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--backoff", type=float, default=None, help="providerBackoffS")
    parser.add_argument("--backoff-max", type=float, default=None, help="providerBackoffMaxS")
    args = parser.parse_args()
    started = time.monotonic()
    base, _, base_attempts = one_run(args, 0.0)
    hit, probes, attempts = one_run(args, args.outage)
    print(
        f"no outage:        {args.tasks} tasks merged in {base:6.1f} s (attempts {base_attempts})"
    )
    print(
        f"{args.outage:g} s outage (529): {args.tasks} tasks merged in {hit:6.1f} s "
        f"(attempts {attempts})"
    )
    print(
        f"delay: {hit - base:.1f} s = the outage {args.outage:g} s "
        f"+ {hit - base - args.outage:.1f} s (the wait for the probe that found the API back, "
        "and the sessions lost at the outage's start)"
    )
    for line in probes:
        print(f"  {line}")
    print(f"(bench wall time {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
