"""What containment costs a session: the real CLI with `agents.sandbox: off` vs contained.

The same worker session (the bundled Claude Code CLI against the scripted endpoint, in a task
clone of a real repository) runs `--runs` times per mode, the modes interleaved (alternating which
goes first in each pair) so a busy shared machine slows both alike. Each session makes one Bash
call (`git status` and a commit: contained, it runs in the nested per-command sandbox) and then
answers. Measured from the provider's `open()` (the moment dispatch ends):

- spawn: the CLI process started (contained: bwrap, which then execs the CLI);
- up: the session is up (the SDK's initialize answered): session start;
- done: the whole two-turn session ended, the Bash call included.

p50 per mode and the ratio contained/off of the p50s. Nothing here asserts a time.

    .venv/bin/python bench/bench_containment.py [--runs 8] [--files 500]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from stoneforge.agents import ClaudeCodeProvider, build_spec, run_session
from stoneforge.agents.sandbox import probe
from stoneforge.demo import FakeModel, Step
from stoneforge.git.task_clone import ensure_task_clone

API_KEY = "sk-ant-bench-not-a-real-key-000000"
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@stoneforge.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@stoneforge.invalid",
}
MODES = ("off", "required")


def make_repo(root: Path, files: int) -> None:
    root.mkdir(parents=True)
    for i in range(files):
        path = root / f"pkg{i % 20}" / f"f{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n")
    (root / ".stoneforge").mkdir()
    env = {**os.environ, **IDENTITY}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=env)


class Timed:
    """Wraps the provider: the moment `open()` is called and the moment the session is up."""

    def __init__(self, inner: ClaudeCodeProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.opened = 0.0
        self.up = 0.0

    @contextlib.asynccontextmanager
    async def _session(self, spec: Any) -> AsyncIterator[Any]:
        async with self.inner.open(spec) as session:
            self.up = time.perf_counter()
            yield session

    def open(self, spec: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        self.opened = time.perf_counter()
        return self._session(spec)


@contextlib.contextmanager
def spawn_clock(moments: list[float]) -> Any:
    original = anyio.open_process

    async def open_process(*args: Any, **kwargs: Any) -> Any:
        process = await original(*args, **kwargs)
        moments.append(time.perf_counter())
        return process

    anyio.open_process = open_process  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.open_process = original  # type: ignore[assignment]


def one_session(model: FakeModel, repo: Path, mode: str, n: int) -> tuple[float, float, float]:
    checkout = repo / ".stoneforge" / "worktrees" / f"t{n}-{mode}"
    ensure_task_clone(repo, checkout, f"sf/t{n}-{mode}", start_point="main")
    model.add_script(
        [
            Step.bash("git status --short && echo x > mine.txt && git add -A && "
                      "git commit -qm mine && echo committed"),
            Step.say("Done."),
        ],
        cwd=checkout,
    )  # fmt: skip
    spec = build_spec(
        "worker",
        cwd=checkout,
        prompt="Commit a file, then report.",
        config_dir=repo / ".stoneforge" / "sessions" / f"{mode}-{n}",
        repo_root=repo,
        api_key=API_KEY,
        base_url=model.base_url,
        env=IDENTITY,
    )
    provider = Timed(ClaudeCodeProvider(sandbox=mode))  # type: ignore[arg-type]
    spawned: list[float] = []
    with spawn_clock(spawned):
        outcome = anyio.run(lambda: run_session(provider, spec))
    done = time.perf_counter()
    if outcome.status != "completed":
        raise SystemExit(f"{mode} session {n} ended {outcome.status}: {outcome.error}")
    return spawned[0] - provider.opened, provider.up - provider.opened, done - provider.opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--files", type=int, default=500)
    opts = parser.parse_args()
    logging.getLogger("stoneforge").setLevel(logging.ERROR)  # the loud 'uncontained' warning
    if not probe().available:
        raise SystemExit(f"bubblewrap does not work here: {probe().detail}")
    times: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="sf-bench-contain-") as tmp, FakeModel() as model:
        repo = Path(tmp) / "repo"
        make_repo(repo, opts.files)
        for mode in MODES:  # warm-up: pages the CLI (and bwrap) in; not counted
            one_session(model, repo, mode, -1)
        for n in range(opts.runs):
            order = MODES if n % 2 == 0 else MODES[::-1]
            for mode in order:
                times[mode].append(one_session(model, repo, mode, n))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{opts.runs} sessions per mode, interleaved; repository {opts.files} files; load {load}")
    print("from provider open() (end of dispatch) to:")
    for i, label in enumerate(("CLI spawned", "session up (start)", "session done (2 turns)")):
        p50 = {mode: statistics.median(t[i] for t in times[mode]) for mode in MODES}
        spread = {mode: [round(t[i], 1) for t in times[mode]] for mode in MODES}
        print(
            f"  {label:24s} off p50 {p50['off'] * 1000:7.1f} ms   contained p50 "
            f"{p50['required'] * 1000:7.1f} ms   contained/off {p50['required'] / p50['off']:.2f}x"
        )
        print(f"  {'':24s} (s, in run order: off {spread['off']}, contained {spread['required']})")


if __name__ == "__main__":
    main()
