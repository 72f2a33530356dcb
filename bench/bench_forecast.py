"""Benchmark: conflict forecast vs the naive way, measured side by side in one run.

Builds (with `git fast-import`, not timed) a repository of 5,000 files in 50 directories, 20 task
branches each touching 10 files (neighbouring branches share files; some edit the same lines, some
add the same new file, so some pairs conflict), and a target that moved on after they forked.
Then times:
  - ours: `stoneforge.git.forecast.forecast` for all 210 pairs (20 branches + target);
  - naive: per pair, `git worktree add --detach` of one side, `git merge --no-commit --no-ff`
    of the other, read the conflicted files, `git merge --abort`, remove the worktree. That is slow,
    so it runs on a sample of pairs and is extrapolated to 210 (the printout says so);
  - naive, reused worktree: the same with one worktree and a `git checkout --detach` per pair
    (a cheaper baseline, shown for honesty).
It also checks that both ways find the same conflicting pairs on the sample.

Run: .venv/bin/python bench/bench_forecast.py [--sample N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stoneforge.git.forecast import forecast

N_DIRS, FILES_PER_DIR, LINES = 50, 100, 30
N_BRANCHES, FILES_PER_BRANCH = 20, 10
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "LC_ALL": "C",
}


def git(repo: Path, *args: str, check: bool = True, input: bytes | None = None) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo, env=ENV, capture_output=True, input=input, check=False
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


def file_path(i: int) -> str:
    return f"pkg{i // FILES_PER_DIR:02d}/mod{i % FILES_PER_DIR:03d}.py"


def base_content(i: int) -> list[str]:
    return [f"# {file_path(i)} line {n}: value = {n * i % 997}\n" for n in range(1, LINES + 1)]


def edit(lines: list[str], line_no: int, who: str) -> list[str]:
    out = list(lines)
    out[line_no - 1] = f"# edited by {who} at line {line_no}\n"
    return out


def blob(content: list[str] | str) -> bytes:
    data = ("".join(content) if isinstance(content, list) else content).encode()
    return b"data %d\n" % len(data) + data + b"\n"


def build_repo(root: Path) -> dict[str, str]:
    """The benchmark repository; returns label -> branch of the task branches."""
    git(root, "init", "-q", "-b", "main")
    hot = random.Random(7).sample(range(N_DIRS * FILES_PER_DIR), 200)
    stream = bytearray()
    t = 1_700_000_000

    def commit(ref: str, mark: int, parent: int | None, msg: str, files: dict[str, bytes]) -> None:
        nonlocal t
        t += 60
        stream.extend(f"commit {ref}\nmark :{mark}\n".encode())
        stream.extend(f"committer bench <bench@example.com> {t} +0000\n".encode())
        stream.extend(blob(msg))
        if parent is not None:
            stream.extend(f"from :{parent}\n".encode())
        for path, data in files.items():
            stream.extend(f"M 100644 inline {path}\n".encode() + data)

    all_files = {file_path(i): blob(base_content(i)) for i in range(N_DIRS * FILES_PER_DIR)}
    commit("refs/heads/main", 1, None, "base: 5000 files", all_files)
    branches: dict[str, str] = {}
    for k in range(N_BRANCHES):
        # Branch k touches hot[8k .. 8k+9]: its last two files are the next branch's first two.
        touched = hot[8 * k : 8 * k + FILES_PER_BRANCH]
        files: dict[str, bytes] = {}
        for pos, i in enumerate(touched):
            line = 3 if pos < 2 else 20  # shared files: k edits line 20, k+1 edits line 3: clean
            if pos >= 8 and k % 4 == 0:
                line = 3  # ... except after every 4th branch: same line, a content conflict
            files[file_path(i)] = blob(edit(base_content(i), line, f"task-{k}"))
        if k % 5 == 0:
            files["docs/NEW.md"] = blob(f"added by task {k}\n")  # add/add among 0, 5, 10, 15
        name = f"sf/t{k:02d}-bench-task-{k}"
        commit(f"refs/heads/{name}", 100 + k, 1, f"task {k}", files)
        branches[f"t{k:02d}"] = name
    # The target moves on after the branches forked, touching files of some branches.
    moved = {
        file_path(hot[i]): blob(edit(base_content(hot[i]), 3 if i % 2 else 20, "main"))
        for i in (1, 45, 90, 133, 170)
    }
    commit("refs/heads/main", 2, 1, "main moves on", moved)
    git(root, "fast-import", "--quiet", input=bytes(stream))
    git(root, "checkout", "-q", "-f", "main")
    git(root, "gc", "-q")  # packed, like a real repository
    return branches


def naive_pair(repo: Path, wt: Path, a: str, b: str, fresh: bool) -> set[str]:
    """Conflict check the naive way: a checkout of `a`, `git merge --no-commit` of `b`."""
    if fresh:
        git(repo, "worktree", "add", "-q", "--detach", str(wt), a)
    else:
        git(wt, "checkout", "-q", "--detach", a)
    proc = subprocess.run(
        ["git", "merge", "--no-commit", "--no-ff", "-q", b],
        cwd=wt,
        env=ENV,
        capture_output=True,
        check=False,
    )
    conflicted = set(git(wt, "diff", "--name-only", "--diff-filter=U").split())
    if proc.returncode != 0 and not conflicted:
        raise SystemExit(f"naive merge failed: {proc.stderr.decode()}")
    git(wt, "merge", "--abort", check=False)
    if fresh:
        git(repo, "worktree", "remove", "--force", str(wt))
    return conflicted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=6, help="pairs timed the naive way (default 6)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary repository")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-forecast-"))
    repo = tmp / "repo"
    repo.mkdir()
    try:
        t0 = time.perf_counter()
        branches = build_repo(repo)
        n_files = len(git(repo, "ls-files").splitlines())
        print(
            f"repository: {n_files} files, {len(branches)} branches x {FILES_PER_BRANCH} files, "
            f"built in {time.perf_counter() - t0:.1f}s (not timed below)"
        )
        forecast(repo, "main", dict(list(branches.items())[:2]))  # warm the page cache

        t0 = time.perf_counter()
        fc = forecast(repo, "main", branches)
        ours = time.perf_counter() - t0
        n_pairs = len(fc.pairs)
        print(
            f"ours:  forecast of {n_pairs} pairs (20 branches + target): {ours:.3f}s wall, "
            f"{len(fc.conflicts)} conflicting pairs"
        )

        labels = {"main": "main", **branches}
        all_pairs = [(p.ours, p.theirs) for p in fc.pairs]
        conflicting = [(p.ours, p.theirs) for p in fc.conflicts]
        clean = [pair for pair in all_pairs if pair not in conflicting]
        # Half conflicting, half clean pairs, so the check below means something.
        k = max(1, opts.sample // 2)
        rnd = random.Random(1)
        sample = rnd.sample(conflicting, min(k, len(conflicting)))
        sample += rnd.sample(clean, min(opts.sample - len(sample), len(clean)))
        expected = {(p.ours, p.theirs): set(p.paths) for p in fc.pairs}
        results = {}
        for fresh in (True, False):
            wt = tmp / ("naive-fresh" if fresh else "naive-reuse")
            if not fresh:
                git(repo, "worktree", "add", "-q", "--detach", str(wt), "main")
            t0 = time.perf_counter()
            for a, b in sample:
                got = naive_pair(repo, wt, labels[a], labels[b], fresh)
                if got != expected[(a, b)]:
                    raise SystemExit(
                        f"mismatch on {a} x {b}: naive {sorted(got)}, "
                        f"forecast {sorted(expected[(a, b)])}"
                    )
            per_pair = (time.perf_counter() - t0) / len(sample)
            results[fresh] = per_pair * n_pairs
        naive, reuse = results[True], results[False]
        print(
            f"naive: worktree add + merge --no-commit + abort per pair: "
            f"{naive / n_pairs * 1000:.0f} ms/pair measured on {len(sample)} sampled pairs, "
            f"extrapolated to {n_pairs} pairs: {naive:.1f}s wall"
        )
        print(
            f"naive, one reused worktree (checkout per pair): {reuse / n_pairs * 1000:.0f} ms/pair "
            f"on the same sample, extrapolated: {reuse:.1f}s wall"
        )
        print(
            f"check: forecast and naive agree on the conflicted files of all {len(sample)} "
            f"sampled pairs ({min(k, len(conflicting))} conflicting, rest clean)"
        )
        print(
            f"ratio: {naive / ours:.1f}x faster than naive "
            f"({reuse / ours:.1f}x vs the reused-worktree variant); "
            f"goal <= 1.5s: {'met' if ours <= 1.5 else 'MISSED'}, "
            f">= 10x: {'met' if naive / ours >= 10 else 'MISSED'}"
        )
    finally:
        if opts.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
