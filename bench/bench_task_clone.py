"""What a task checkout costs on a large repository: a linked worktree (before), a task clone
that shares the repository's objects made at dispatch, and one taken from the prepared pool.

The repository has `--files` files (default 5,000) in one commit, plus a commit that changes a
few of them between the pool being filled and the dispatch (the pool's clones are a little
behind the target, as they are in use). Each variant runs `--runs` times; p50 and max are shown.
These are measurements, not tests: nothing here asserts a time.

    .venv/bin/python bench/bench_task_clone.py [--files 5000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stoneforge.git.clone_pool import ClonePool
from stoneforge.git.task_clone import ensure_task_clone, make_clone

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@stoneforge.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@stoneforge.invalid",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY}
    out = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=env)
    return out.stdout.decode().strip()


def make_repo(root: Path, files: int) -> None:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(files):
        path = root / f"pkg{i % 50}" / f"mod{i % 7}" / f"f{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" * 20)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    git(root, "gc", "-q")


def move_main(root: Path, n: int) -> None:
    for i in range(5):
        (root / f"pkg{i}" / "mod0" / f"f{i}.py").write_text(f"VALUE = {n}\n")
    git(root, "commit", "-q", "-am", f"main moves {n}")


def timed(runs: int, setup: Callable[[int], None], action: Callable[[int], None]) -> list[float]:
    times = []
    for n in range(runs):
        setup(n)
        start = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    print(
        f"  {label:52s} n={len(times):2d}  p50 {statistics.median(times) * 1000:7.1f} ms  "
        f"max {max(times) * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-bench-clone-") as tmp:
        base = Path(tmp)
        root = base / "repo"
        make_repo(root, opts.files)
        wt = base / "wt"
        pool = ClonePool(root, wt / ".pool", "main", size=1)
        print(f"repository: {opts.files} files")
        report(
            "linked worktree (`git worktree add`, before)",
            timed(
                opts.runs,
                lambda n: None,
                lambda n: git(root, "worktree", "add", "-q", "-b", f"w{n}", str(wt / f"w{n}")),
            ),
        )
        report(
            "task clone made at dispatch (init + alternates + checkout)",
            timed(
                opts.runs,
                lambda n: None,
                lambda n: ensure_task_clone(root, wt / f"c{n}", f"sf/c{n}", start_point="main"),
            ),
        )

        def fill(n: int) -> None:
            pool.refill(wait=True)
            move_main(root, n)

        report(
            "task clone from the pool (rename + checkout of changes)",
            timed(
                opts.runs,
                fill,
                lambda n: ensure_task_clone(
                    root, wt / f"p{n}", f"sf/p{n}", start_point="main", pool=pool
                ),
            ),
        )
        report(
            "  (preparing one pool clone, off the dispatch path)",
            timed(3, lambda n: None, lambda n: make_clone(root, wt / f"x{n}", "main")),
        )


if __name__ == "__main__":
    main()
