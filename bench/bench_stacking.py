"""Stacked branches: the wall time of a chain of dependent tasks, stacking off beside on.

A chain t1 <- t2 <- t3 (each task depends on the one before) runs through the real
`Orchestrator` (dispatcher, steward, reviewer) in a throwaway repository until idle, once with
`orchestrator.stacking: false` (today: a dependent starts once its blocker has landed) and once
with `true` (it starts on its blocker's branch as soon as the blocker is in review), in
alternating order per round. Each agent is a stub provider session that sleeps `--agent-s` and
leaves one file; the merge queue's check is `sleep --check-s`; with `--review-s` the steward's
review is on and its (stub) session approves after that long.

With serial checks the floor is 3 * (agent + check) for the chain without stacking and
3 * agent + check with it (t3 cannot finish before t2 is in review, nor land before its own
check): 40 / 60 = 0.67 for 10 s and 10 s. A review step is pipelined the same way: with a 5 s
review the floors are 75 s and 45 s (0.6). The report gives both measured times and the ratio.

    .venv/bin/python bench/bench_stacking.py [--agent-s 10] [--check-s 10] [--review-s 0]
        [--rounds 1] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from stoneforge.agents import AgentSession, Result, SessionSpec, SessionStarted
from stoneforge.agents.mcp_tools import SUBMIT_REVIEW
from stoneforge.models import TaskStatus
from stoneforge.service import Service

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


class StubSession:
    """A worker that works ``seconds`` and leaves a file; a reviewer that approves after
    ``seconds``."""

    def __init__(self, spec: SessionSpec, seconds: float) -> None:
        self.spec = spec
        self.seconds = seconds

    provider_session_id = "stub"
    pid = None

    async def events(self) -> AsyncIterator[Any]:
        yield SessionStarted(provider_session_id="stub", cwd=str(self.spec.cwd))
        await anyio.sleep(self.seconds)
        if self.spec.mcp is not None and SUBMIT_REVIEW in self.spec.mcp.enabled:
            await self.spec.mcp.submit_review(
                {"verdict": "approve", "summary": "stub review", "comments": []}
            )
        else:
            name = f"work_{time.monotonic_ns()}.txt"
            (Path(self.spec.cwd) / name).write_text("work\n")
        yield Result(provider_session_id="stub", is_error=False, subtype="success")

    async def send(self, text: str) -> None:
        pass

    async def stop(self, reason: str = "") -> None:
        pass

    def kill(self) -> None:
        pass


class StubProvider:
    name = "stub"

    def __init__(self, agent_s: float, review_s: float) -> None:
        self.agent_s = agent_s
        self.review_s = review_s

    @contextlib.asynccontextmanager
    async def _session(self, spec: SessionSpec) -> AsyncIterator[AgentSession]:
        review = spec.mcp is not None and SUBMIT_REVIEW in spec.mcp.enabled
        yield StubSession(spec, self.review_s if review else self.agent_s)  # type: ignore[misc]

    def open(self, spec: SessionSpec) -> contextlib.AbstractAsyncContextManager[AgentSession]:
        return self._session(spec)


def make_repo(root: Path, config: str) -> Service:
    root.mkdir(parents=True)
    (root / "README.md").write_text("bench\n")
    (root / ".stoneforge").mkdir()
    (root / ".stoneforge" / "config.yaml").write_text(config)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.name", GIT_IDENTITY["GIT_AUTHOR_NAME"])
    git("config", "user.email", GIT_IDENTITY["GIT_AUTHOR_EMAIL"])
    service, _ = Service.init(root, actor="bench")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    return service


def chain_wall_time(
    root: Path, *, stacking: bool, agent_s: float, check_s: float, review_s: float, length: int
) -> float:
    """Seconds from the orchestrator's start to the whole chain merged (it runs until idle)."""
    review = "true" if review_s > 0 else "false"
    config = (
        f"orchestrator:\n  maxConcurrent: 4\n  stacking: {str(stacking).lower()}\n"
        f"agents:\n  sandbox: off\n  steward:\n    review: {review}\n"
        f'merge:\n  checks: ["sleep {check_s:g}"]\n'
    )
    service = make_repo(root, config)
    with service:
        chain: list[str] = []
        for i in range(length):
            chain.append(service.create_task(f"chain {i}", depends_on=chain[-1:]).id)
        orchestrator = service.orchestrator(until_idle=True, agent_env=GIT_IDENTITY)
        stub = StubProvider(agent_s, review_s)
        tracked = orchestrator.provider
        if hasattr(tracked, "inner"):
            tracked.inner = stub
        else:
            orchestrator.provider = stub  # type: ignore[assignment]
        started = time.monotonic()
        anyio.run(orchestrator.run)
        took = time.monotonic() - started
        merged = [t for t in service.list_tasks() if t.status == TaskStatus.MERGED]
        if len(merged) != length:
            states = {t.id: t.status.value for t in service.list_tasks()}
            raise SystemExit(f"stacking={stacking}: only {len(merged)} merged: {states}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-s", type=float, default=10.0)
    parser.add_argument("--check-s", type=float, default=10.0)
    parser.add_argument("--review-s", type=float, default=0.0, help="0: review off")
    parser.add_argument("--length", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every duration")
    opts = parser.parse_args()
    agent_s, check_s, review_s = (
        opts.scale * x for x in (opts.agent_s, opts.check_s, opts.review_s)
    )
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="sf-bench-stacking-") as tmp:
        for n in range(opts.rounds):
            for stacking in (False, True) if n % 2 == 0 else (True, False):
                took = chain_wall_time(
                    Path(tmp) / f"r{n}-{stacking}",
                    stacking=stacking,
                    agent_s=agent_s,
                    check_s=check_s,
                    review_s=review_s,
                    length=opts.length,
                )
                times[stacking].append(took)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    review = f", review {review_s:g} s" if review_s else ", review off"
    print(
        f"chain of {opts.length} dependent tasks (agent {agent_s:g} s, check {check_s:g} s"
        f"{review}), median of {opts.rounds}:"
    )
    print(f"  stacking off (today)  {off:7.1f} s")
    print(f"  stacking on           {on:7.1f} s   {on / off:.2f}x of today (goal <= 0.60x)")


if __name__ == "__main__":
    main()
