"""Benchmark: the merge queue, batched landing against sequential landing, in one run.

16 merge requests, each adding its own module (no two touch the same file), on a project whose
check takes 2 s (`sleep 2`, then a real test of the tree: import every module and assert its
value). The steward (`stoneforge.orchestrator.steward.Steward`) is driven directly, no agents:
each case builds a fresh repository with 16 task branches and merge requests in review, then runs
steward rounds until the queue is empty. Cases:
  - all 16 green;
  - one bad MR among the 16 (its module fails the test), by default the first in the queue,
    which is the worst place for bisection with inference at batch size 8.
for each batch size in --sizes (default 1, 8, 16; 1 is sequential landing), one batch at a time
(`merge.parallelChecks: 1`), and beside them look-ahead at the chosen batch size
(`merge.parallelChecks: --parallel`, default 2: the next batch checked on top of the one being
checked, each in its own check checkout). It prints the check
runs used (`steward.check_runs`: one run = the configured checks on one commit; a failure is run
once more before it counts, and that retry is a run), the wall time, what landed, and verifies
that every commit on main's first-parent line was checked and passed before it landed.

Goal (issue 6): <= 3 check runs when all are green and <= 9 with one bad MR among 16. The chosen
configuration is `merge.batchSize: 8`: all green takes 2 runs (two batches); one bad takes at
most 9 (a bad first MR: 1 + 1 + 1 + 2 + 1 + 1 + 1 for the failing batch, 1 for the other).
Batch size 16 needs 1 run all green but up to 10 with one bad (one more halving), so it misses.

Goal (issue 18): with one bad MR and 10 s checks (`--check-s 10`), look-ahead with
parallelChecks 2 lands the 16 in <= 0.6x the wall time of the batched queue (batchSize 8).

Run: .venv/bin/python bench/bench_merge_queue.py [--sizes 1,8,16] [--bad-at N] [--check-s 2]
     [--parallel 2]   (e.g. `--sizes 8 --check-s 10` for the look-ahead goal alone)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from stoneforge.config import StoneforgeConfig
from stoneforge.git.merge import enable_shared_rerere
from stoneforge.models import MergeStatus
from stoneforge.orchestrator.steward import Steward
from stoneforge.store import Store

N_MRS = 16
CHOSEN_BATCH = 8
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}

CHECK_PY = """import importlib, pathlib, sys
sys.path.insert(0, ".")
for path in sorted(pathlib.Path("mods").glob("m*.py")):
    module = importlib.import_module(f"mods.{path.stem}")
    assert module.value() == module.EXPECTED, f"{path}: {module.value()} != {module.EXPECTED}"
print("ok")
"""


def git(repo: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        input=input,
        env={**ENV, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


class NoAgents:
    """The steward needs an agent only for conflicts; these merge requests have none."""

    name = "none"

    def open(self, spec: object) -> object:
        raise RuntimeError("the benchmark's merge requests never conflict")


@dataclass
class Result:
    batch: int
    parallel: int
    case: str
    runs: int
    wall_s: float
    landed: int
    failed: int
    first_parent: int


def make_repo(root: Path, bad: int | None) -> Store:
    """A project on main and N_MRS task branches (plumbing only), each with an MR in review."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".git" / "info" / "exclude").write_text(".stoneforge/\n")
    (root / "check.py").write_text(CHECK_PY)
    (root / "mods").mkdir()
    (root / "mods" / "__init__.py").write_text("")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "project")
    (root / ".stoneforge").mkdir()
    store = Store(root / ".stoneforge" / "state.db")
    base = git(root, "rev-parse", "main")
    index = {"GIT_INDEX_FILE": str(root / ".git" / "bench-index")}
    for n in range(N_MRS):
        wrong = " + 1" if n == bad else ""
        text = f"EXPECTED = {n}\n\n\ndef value():\n    return {n}{wrong}\n"
        blob = git(root, "hash-object", "-w", "--stdin", input=text)
        git(root, "read-tree", base, env=index)
        git(
            root,
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{blob},mods/m{n:02d}.py",
            env=index,
        )
        tree = git(root, "write-tree", env=index)
        commit = git(root, "commit-tree", tree, "-p", base, "-m", f"Add module {n}")
        task = store.create_task(f"Module {n}")
        branch = f"sf/{task.id}-module-{n}"
        git(root, "update-ref", f"refs/heads/{branch}", commit)
        attempt = store.dispatch_task(task.id).dispatches
        store.complete_task(
            task.id, attempt=attempt, branch=branch, head_commit=commit, summary=f"Add module {n}"
        )
    return store


async def run_case(
    workdir: Path, batch: int, parallel: int, case: str, bad: int | None, check_s: float
) -> Result:
    root = workdir / f"b{batch}-p{parallel}-{case.replace(' ', '-')}"
    log = workdir / f"{root.name}.log"
    store = make_repo(root, bad)
    command = (
        f"sleep {check_s:g} && {sys.executable} check.py; r=$?; "
        f'echo "$(git rev-parse HEAD) $r" >> {log}; exit $r'
    )
    config = StoneforgeConfig.model_validate(
        {
            "orchestrator": {"maxAttempts": 1},
            "merge": {
                "checks": [command],
                "batchSize": batch,
                "parallelChecks": parallel,
                "checkTimeoutS": 120,
            },
        }
    )
    enable_shared_rerere(root)
    steward = Steward(
        root=root,
        config=config,
        store=store,
        provider=NoAgents(),  # type: ignore[arg-type]
        target="main",
        agent_env={},
        note=lambda _: None,
        on_landed=lambda: None,
    )
    started = time.monotonic()
    while await steward.round():
        pass
    wall = time.monotonic() - started
    mrs = store.list_merge_requests()
    landed = sum(m.status == MergeStatus.MERGED for m in mrs)
    failed = sum(m.status == MergeStatus.TEST_FAILED for m in mrs)
    line = git(root, "rev-list", "--first-parent", "main").split()[:-1]
    passed = {row.split()[0] for row in log.read_text().splitlines() if row.endswith(" 0")}
    unchecked = [c for c in line if c not in passed]
    if unchecked:
        raise SystemExit(f"batch {batch}, {case}: main holds unchecked commits {unchecked}")
    expected_landed = N_MRS - (1 if bad is not None else 0)
    if landed != expected_landed or failed != N_MRS - expected_landed:
        raise SystemExit(f"batch {batch}, {case}: {landed} landed, {failed} failed")
    store.close()
    return Result(batch, parallel, case, steward.check_runs, wall, landed, failed, len(line))


def label(batch: int, parallel: int = 1) -> str:
    if parallel > 1:
        return f"look-ahead (batchSize {batch}, parallelChecks {parallel})"
    if batch == 1:
        return "sequential (batchSize 1)"
    chosen = "  <- chosen" if batch == CHOSEN_BATCH else ""
    return f"batched (batchSize {batch}){chosen}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"1,{CHOSEN_BATCH},16", help="batch sizes to run")
    parser.add_argument("--bad-at", type=int, default=0, help="queue position of the bad MR")
    parser.add_argument("--check-s", type=float, default=2.0, help="seconds each check sleeps")
    parser.add_argument(
        "--parallel", type=int, default=2, help="look-ahead's parallelChecks (0: no look-ahead)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the repositories")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="sf-bench-mq-"))
    print(
        f"merge queue: {N_MRS} MRs touching separate files, a check of {args.check_s:g} s "
        f"(sleep + import and test every module); the bad MR is #{args.bad_at + 1} in the queue"
    )
    results: list[Result] = []
    try:
        runs = [(batch, 1) for batch in sizes]
        if args.parallel > 1:
            runs.append((CHOSEN_BATCH, args.parallel))
        for case, bad in (("all green", None), ("one bad", args.bad_at)):
            for batch, parallel in runs:
                result = anyio.run(run_case, workdir, batch, parallel, case, bad, args.check_s)
                results.append(result)
                print(
                    f"  {case:<9}  {label(batch, parallel):<46} check runs {result.runs:>2}   "
                    f"wall {result.wall_s:6.1f} s   landed {result.landed:>2}, "
                    f"test_failed {result.failed}, first-parent commits {result.first_parent:>2}"
                    " (all checked)",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"repositories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    by = {(r.batch, r.case): r for r in results if r.parallel == 1}
    ahead = {r.case: r for r in results if r.parallel > 1}
    if 1 in sizes and CHOSEN_BATCH in sizes:
        for case in ("all green", "one bad"):
            seq, bat = by[(1, case)], by[(CHOSEN_BATCH, case)]
            print(
                f"  {case}: batchSize {CHOSEN_BATCH} uses {seq.runs / bat.runs:.1f}x fewer check "
                f"runs and {seq.wall_s / bat.wall_s:.1f}x less wall time than sequential"
            )
    if CHOSEN_BATCH in sizes:
        green, bad = by[(CHOSEN_BATCH, "all green")], by[(CHOSEN_BATCH, "one bad")]
        ok = green.runs <= 3 and bad.runs <= 9
        print(
            f"  goal (<= 3 runs all green, <= 9 with one bad) with merge.batchSize "
            f"{CHOSEN_BATCH}: {green.runs} and {bad.runs}: {'met' if ok else 'MISSED'}"
        )
    if CHOSEN_BATCH in sizes and ahead:
        for case in ("all green", "one bad"):
            batched, look = by[(CHOSEN_BATCH, case)], ahead[case]
            print(
                f"  {case}: look-ahead takes {look.wall_s / batched.wall_s:.2f}x the wall time of "
                f"the batched queue ({look.wall_s:.1f} s against {batched.wall_s:.1f} s), "
                f"{look.runs} check runs against {batched.runs}"
            )
        ratio = ahead["one bad"].wall_s / by[(CHOSEN_BATCH, "one bad")].wall_s
        print(
            f"  goal (one bad, look-ahead <= 0.6x the batched queue's wall time) with "
            f"parallelChecks {args.parallel}: {ratio:.2f}x: {'met' if ratio <= 0.6 else 'MISSED'}"
            + ("" if args.check_s >= 10 else f" (checks of {args.check_s:g} s, not 10 s)")
        )


if __name__ == "__main__":
    main()
