"""Dispatch latency: from "a task becomes ready" to "its agent process is started".

The real `Orchestrator` (from `Service.orchestrator`) runs in a throwaway repository with
`merge.checks: []`, so tasks go all the way to merged. Two ways for a task to become ready:

- created: another connection creates the task while the orchestrator runs (the orchestrator
  learns of it through the store watcher). Ready = that connection's commit. The next task is
  created once the previous one was dispatched, after a random pause of 0-100 ms, so arrivals
  fall at every phase of the watcher's probe and no queue builds up.
- unblocked: a chain t1 <- t2 <- ... where each task depends on the one before; a task becomes
  ready when the merge queue marks its blocker merged. Ready = that commit of the store. This
  runs with `orchestrator.stacking: false`: with stacking (the default) a dependent starts on its
  blocker's branch as soon as the blocker is in review, before the landing measured here.

"Agent process started" is measured two ways:

(b) a stub provider (the `AgentProvider` protocol) that records the time `open()` is called and
    then ends at once, leaving a file the orchestrator commits for it: the dispatcher alone
    (store reads, the `in_progress` update, the worktree, the session row, the prompt);
(a) the real `ClaudeCodeProvider` against the scripted endpoint (`stoneforge.demo.FakeModel`,
    one `Step.say` per session) behind a thin wrapper that records `open()`; the CLI process
    is timed when `anyio.open_process` returns for it (fork + exec done) and when the session
    is up (the SDK's initialize handshake answered). These sessions make no commit, so each task
    fails at once (`maxAttempts: 1`); only the dispatch is measured.

Beside each line, a 5-second polling loop's expected latency: a task appears at a uniformly
random moment of the 5 s period, so p50 = mean = 2.5 s and p95 = 4.75 s; the ratio is its p50
over ours. These are measurements, not tests: nothing here asserts a time.

A what-if line shows the created path with the orchestrator's store watcher probing every
10 ms without its 50 ms debounce (patched in this process only; not the shipped setting).

"Dispatch" here is always ready -> provider `open()`: the store transition, the task's checkout
(a pool clone renamed and put on its branch, or a clone made on the spot), its set-up, the session
row and the prompt; nothing of it is left out. `--against REV` measures the stub scenarios of the
code at git revision REV (e.g. the commit before a change) side by side with this checkout: each
variant runs in its own process (`PYTHONPATH` pointing at that revision's `server/`), in rounds
that alternate which goes first, and the report gives both and the ratio of their p50s.

    .venv/bin/python bench/bench_dispatch.py [--tasks 200] [--cli-tasks 20] [--what-if-tasks 50]
    .venv/bin/python bench/bench_dispatch.py --files 5000 --against a6c5bdd --tasks 15 --rounds 2
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread

from stoneforge import store_watch
from stoneforge.agents import AgentProvider, AgentSession, Result, SessionSpec, SessionStarted
from stoneforge.demo import FakeModel, Step
from stoneforge.git import task_clone
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import TaskStatus
from stoneforge.orchestrator import daemon
from stoneforge.orchestrator.daemon import Orchestrator
from stoneforge.service import Service
from stoneforge.store import Store

GOAL_P50_MS = 50.0
POLL_PERIOD_S = 5.0
POLL_P50_S = POLL_PERIOD_S / 2  # uniform phase: the median (and mean) wait is half the period
POLL_P95_S = POLL_PERIOD_S * 0.95
API_KEY = "sk-ant-bench-not-a-real-key-000000"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stoneforge bench",
    "GIT_AUTHOR_EMAIL": "bench@stoneforge.invalid",
    "GIT_COMMITTER_NAME": "Stoneforge bench",
    "GIT_COMMITTER_EMAIL": "bench@stoneforge.invalid",
}
TASK_IN_PROMPT = re.compile(r"Stoneforge task (t\d+):")


# -- what is measured ------------------------------------------------------------------------------


class Clock:
    """Moments (perf_counter) per task id, the first of each kind; written from the event loop
    and from worker threads."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}
        self.opened: dict[str, float] = {}
        self.spawned: dict[str, float] = {}
        self.up: dict[str, float] = {}
        self.woken: dict[str, float] = {}
        self.dispatched: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self.merged: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, table: dict[str, float], task_id: str, moment: float | None = None) -> None:
        with self._lock:
            table.setdefault(task_id, time.perf_counter() if moment is None else moment)

    def mark_woken(self) -> None:
        """The dispatcher was asked to look again: a first wake-up for every task now ready."""
        now = time.perf_counter()
        with self._lock:
            for task_id in self.ready:
                self.woken.setdefault(task_id, now)

    def latencies(
        self, table: dict[str, float], since: dict[str, float] | None = None
    ) -> list[float]:
        since = self.ready if since is None else since
        return [table[t] - since[t] for t in self.ready if t in table and t in since]


def task_of(spec: SessionSpec) -> str:
    found = TASK_IN_PROMPT.search(spec.prompt)
    if found is None:
        raise RuntimeError("the worker prompt does not name its task")
    return found.group(1)


def record_commits(store: Store, clock: Clock, on_merged: Callable[[str], None] | None) -> None:
    """Note the moment a task is created, dispatched or merged on ``store``'s connection.

    Every write method of the store commits and then reads the row back with ``get_task`` on
    the same thread, so the entry of that ``get_task`` is the commit, to a few microseconds.
    The wrappers sit on this one instance only (the bench's own instrumentation)."""
    local = threading.local()
    create_task, transition_task, get_task = (
        store.create_task,
        store.transition_task,
        store.get_task,
    )
    anything = object()

    def get_task_recorded(task_id: str) -> Any:
        pending = getattr(local, "pending", None)
        if pending is anything or pending == task_id:
            local.pending = None
            local.moment = time.perf_counter()
        return get_task(task_id)

    def create_task_recorded(*args: Any, **kwargs: Any) -> Any:
        local.pending, local.moment = anything, None
        task = create_task(*args, **kwargs)
        clock.mark(clock.created, task.id, local.moment)
        return task

    def transition_task_recorded(task_id: str, event: TaskEvent, **kwargs: Any) -> Any:
        watched = event in (TaskEvent.LAND, TaskEvent.DISPATCH)
        local.pending, local.moment = (task_id if watched else None), None
        task = transition_task(task_id, event, **kwargs)
        if event == TaskEvent.DISPATCH and local.moment is not None:
            clock.mark(clock.dispatched, task_id, local.moment)
        if event == TaskEvent.LAND and local.moment is not None:
            clock.mark(clock.merged, task_id, local.moment)
            if on_merged is not None:
                on_merged(task_id)
        return task

    store.get_task = get_task_recorded  # type: ignore[method-assign]
    store.create_task = create_task_recorded  # type: ignore[method-assign]
    store.transition_task = transition_task_recorded  # type: ignore[method-assign]


def record_wakeups(orchestrator: Orchestrator, clock: Clock) -> None:
    """Note when the dispatcher is asked to look again: by the store watcher (another connection
    wrote) or by a direct `wake()` (a run ended, the steward landed). Both are bound in `run()`,
    so these instance attributes are what the watcher and the steward get."""
    on_store_events, wake = orchestrator._on_store_events, orchestrator.wake

    def on_store_events_recorded(events: Any) -> None:
        clock.mark_woken()
        on_store_events(events)

    def wake_recorded() -> None:
        clock.mark_woken()
        wake()

    orchestrator._on_store_events = on_store_events_recorded  # type: ignore[method-assign]
    orchestrator.wake = wake_recorded  # type: ignore[method-assign]


# -- providers -------------------------------------------------------------------------------------


class StubSession:
    """Ends at once with a success, leaving one new file for the orchestrator to commit."""

    def __init__(self, spec: SessionSpec, task_id: str) -> None:
        self.spec = spec
        self.task_id = task_id

    @property
    def provider_session_id(self) -> str | None:
        return f"stub-{self.task_id}"

    @property
    def pid(self) -> int | None:
        return None

    async def events(self) -> AsyncIterator[Any]:
        (self.spec.cwd / f"{self.task_id}.txt").write_text(f"work of {self.task_id}\n")
        yield SessionStarted(provider_session_id=f"stub-{self.task_id}", cwd=str(self.spec.cwd))
        yield Result(provider_session_id=f"stub-{self.task_id}", is_error=False, subtype="success")

    async def send(self, text: str) -> None:
        pass

    async def stop(self, reason: str = "") -> None:
        pass

    def kill(self) -> None:
        pass


class StubProvider:
    name = "stub"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    @contextlib.asynccontextmanager
    async def _session(self, spec: SessionSpec, task_id: str) -> AsyncIterator[AgentSession]:
        yield StubSession(spec, task_id)

    def open(self, spec: SessionSpec) -> contextlib.AbstractAsyncContextManager[AgentSession]:
        task_id = task_of(spec)
        self.clock.mark(self.clock.opened, task_id)
        return self._session(spec, task_id)


class MeasuringProvider:
    """Delegates to a real provider; records when `open()` is called and when the session is up.

    The CLI's spawn is timed by `spawn_timer`, keyed by the session's working directory."""

    def __init__(self, inner: AgentProvider, clock: Clock, cwds: dict[str, str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.clock = clock
        self.cwds = cwds

    @contextlib.asynccontextmanager
    async def _session(self, spec: SessionSpec, task_id: str) -> AsyncIterator[AgentSession]:
        async with self.inner.open(spec) as session:
            self.clock.mark(self.clock.up, task_id)
            yield session

    def open(self, spec: SessionSpec) -> contextlib.AbstractAsyncContextManager[AgentSession]:
        task_id = task_of(spec)
        self.clock.mark(self.clock.opened, task_id)
        self.cwds[os.path.realpath(spec.cwd)] = task_id
        return self._session(spec, task_id)


@contextlib.contextmanager
def spawn_timer(clock: Clock, cwds: dict[str, str]) -> Any:
    """Time every `anyio.open_process` whose cwd is a known session's (the SDK spawns the CLI so)."""
    original = anyio.open_process

    async def open_process(*args: Any, **kwargs: Any) -> Any:
        process = await original(*args, **kwargs)
        cwd = kwargs.get("cwd")
        task_id = cwds.get(os.path.realpath(cwd)) if cwd is not None else None
        if task_id is not None:
            clock.mark(clock.spawned, task_id)
        return process

    anyio.open_process = open_process  # type: ignore[assignment]
    try:
        yield
    finally:
        anyio.open_process = original  # type: ignore[assignment]


def use_provider(orchestrator: Orchestrator, make: Callable[[Any], Any]) -> None:
    """Put ``make(real provider)`` in the orchestrator's place: inside the provider-health
    wrapper where there is one (it hands each role its own view of the provider), else as is."""
    tracked = orchestrator.provider
    if hasattr(tracked, "inner") and hasattr(tracked, "for_owner"):
        tracked.inner = make(tracked.inner)
    else:
        orchestrator.provider = make(tracked)


# -- scenarios -------------------------------------------------------------------------------------


#: Files in the bench repository (`--files`): a task checkout is a clone of all of them.
REPO_FILES = 0


def make_repo(root: Path, config: str) -> Service:
    root.mkdir(parents=True)
    (root / "README.md").write_text("bench\n")
    for i in range(REPO_FILES):
        path = root / f"pkg{i % 50}" / f"mod{i % 7}" / f"f{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" * 20)
    (root / ".stoneforge").mkdir()
    (root / ".stoneforge" / "config.yaml").write_text(config)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.name", GIT_IDENTITY["GIT_AUTHOR_NAME"])
    git("config", "user.email", GIT_IDENTITY["GIT_AUTHOR_EMAIL"])
    service, _ = Service.init(root, actor="bench")
    git("add", "-A")  # config and .stoneforge/.gitignore: the checkout stays clean
    git("commit", "-q", "-m", "init")
    return service


SETTLE_S = 0.2
#: --pool-settled: a task is created only once the clone pool's filler is idle (steady state:
#: arrivals no faster than clones are made, as with sessions of minutes).
POOL_SETTLED = False


def wait_for_pools() -> None:
    """A stopped orchestrator's pool finishes the clone it was making: wait for that before
    the bench's directories are removed."""
    while not pool_idle():
        time.sleep(0.05)


def pool_idle() -> bool:
    """No clone pool of this process is making or refreshing clones (old and new code alike)."""
    # The pools moved from task_clone to clone_pool: either may be the code measured (--against).
    try:
        from stoneforge.git import clone_pool as pools_module
    except ImportError:
        pools_module = task_clone  # type: ignore[assignment]
    fillers = [getattr(p, "_filler", None) for p in getattr(pools_module, "_POOLS", {}).values()]
    return all(f is None or not f.is_alive() for f in fillers)


WHAT_IF_PROBE_S = 0.01
# Dispatch is what is measured: no review session (the stub agents give no verdict).
STUB_CONFIG = (
    "orchestrator:\n  maxConcurrent: 64\n"
    "agents:\n  steward:\n    review: false\n"
    "merge:\n  checks: []\n"
)
# Unblocked means "its blocker landed": without stacking. With `orchestrator.stacking` (the
# default) a dependent starts when its blocker enters review, before the landing this measures.
UNBLOCKED_CONFIG = STUB_CONFIG.replace(
    "orchestrator:\n  maxConcurrent: 64\n",
    "orchestrator:\n  maxConcurrent: 64\n  stacking: false\n",
)
CLI_CONFIG = (
    "orchestrator:\n  maxConcurrent: 64\n  maxAttempts: 1\n"
    "agents:\n  sandbox: {sandbox}\n  steward:\n    review: false\n"
    "merge:\n  checks: []\n"
)


async def wait_for(check: Callable[[], bool], interval: float = 0.005) -> None:
    while not check():
        await anyio.sleep(interval)


async def run_orchestrator(orchestrator: Orchestrator, driver: Callable[[], Any]) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.run)
        await orchestrator.started.wait()
        await driver()


async def drive_created(
    service: Service,
    orchestrator: Orchestrator,
    clock: Clock,
    count: int,
    *,
    on_created: Callable[[str], None] = lambda task_id: None,
    until: Callable[[Clock, str], bool] | None = None,
    seed: int = 5,
) -> None:
    """Create `count` tasks one by one from another connection; stop the orchestrator when idle.

    Each task is created when the orchestrator is quiet (the previous task is done and its
    clean-up had time to finish), so nothing but the store watcher can wake it; the random part
    of the pause puts the creation at any phase of the watcher's probe."""
    rng = random.Random(seed)
    until = until or (lambda c, task_id: task_id in c.opened)
    creator = Store(service.store.path, actor="bench-creator")
    record_commits(creator, clock, None)
    try:
        for i in range(count):
            await wait_for(orchestrator.is_idle, 0.01)
            if POOL_SETTLED:
                await wait_for(pool_idle, 0.05)
            await anyio.sleep(SETTLE_S + rng.uniform(0.0, 0.1))
            task = await to_thread.run_sync(lambda i=i: creator.create_task(f"bench task {i}"))
            clock.mark(clock.ready, task.id, clock.created[task.id])
            on_created(task.id)
            await wait_for(lambda task_id=task.id: until(clock, task_id))
        await wait_for(orchestrator.is_idle, 0.05)
    finally:
        creator.close()
        orchestrator.request_stop()


def stub_created(root: Path, count: int) -> Clock:
    clock = Clock()
    service = make_repo(root, STUB_CONFIG)
    with service:
        orchestrator = service.orchestrator(max_concurrent=64, agent_env=GIT_IDENTITY)
        use_provider(orchestrator, lambda real: StubProvider(clock))
        record_commits(service.store, clock, None)  # the orchestrator's own connection
        record_wakeups(orchestrator, clock)
        anyio.run(
            run_orchestrator,
            orchestrator,
            lambda: drive_created(service, orchestrator, clock, count),
        )
    return clock


@contextlib.contextmanager
def fast_watcher(probe_s: float) -> Any:
    """What-if, not the shipped setting: the orchestrator's watcher probes every ``probe_s`` and
    does not debounce (the editor's change notifications would keep theirs)."""
    original_probe, original_class = store_watch.PROBE_INTERVAL_S, daemon.StoreWatcher
    store_watch.PROBE_INTERVAL_S = probe_s
    daemon.StoreWatcher = functools.partial(original_class, debounce_s=0.0)  # type: ignore[misc]
    try:
        yield
    finally:
        store_watch.PROBE_INTERVAL_S = original_probe
        daemon.StoreWatcher = original_class  # type: ignore[misc]


def stub_unblocked(root: Path, count: int) -> Clock:
    clock = Clock()
    service = make_repo(root, UNBLOCKED_CONFIG)
    with service:
        chain: list[str] = []
        for i in range(count + 1):
            task = service.create_task(f"chain {i}", depends_on=chain[-1:])
            chain.append(task.id)
        after = {blocker: dependent for blocker, dependent in zip(chain, chain[1:], strict=False)}

        def on_merged(task_id: str) -> None:
            dependent = after.get(task_id)
            if dependent is not None:
                clock.mark(clock.ready, dependent, clock.merged[task_id])

        orchestrator = service.orchestrator(
            max_concurrent=64, until_idle=True, agent_env=GIT_IDENTITY
        )
        use_provider(orchestrator, lambda real: StubProvider(clock))
        record_commits(service.store, clock, on_merged)  # the orchestrator's own connection
        record_wakeups(orchestrator, clock)
        anyio.run(orchestrator.run)
        merged = [t for t in service.list_tasks() if t.status == TaskStatus.MERGED]
        if len(merged) != len(chain):
            raise SystemExit(f"only {len(merged)} of {len(chain)} chained tasks merged")
    return clock


def cli_created(root: Path, count: int, sandbox: str = "auto") -> Clock:
    clock = Clock()
    cwds: dict[str, str] = {}
    service = make_repo(root, CLI_CONFIG.format(sandbox=sandbox))
    with service, FakeModel() as model, spawn_timer(clock, cwds):
        orchestrator = service.orchestrator(
            max_concurrent=64, agent_env={**model.env(API_KEY), **GIT_IDENTITY}
        )
        use_provider(orchestrator, lambda real: MeasuringProvider(real, clock, cwds))
        record_commits(service.store, clock, None)
        record_wakeups(orchestrator, clock)

        def script(task_id: str) -> None:
            model.add_script(
                [Step.say("Nothing to do here.")], marker=f"Stoneforge task {task_id}:"
            )

        anyio.run(
            run_orchestrator,
            orchestrator,
            lambda: drive_created(
                service,
                orchestrator,
                clock,
                count + 1,  # the first one warms up (pages the CLI in); it is dropped below
                on_created=script,
                until=lambda c, task_id: task_id in c.up,
            ),
        )
    first = min(clock.ready, key=clock.ready.__getitem__)
    for table in (
        clock.ready,
        clock.woken,
        clock.dispatched,
        clock.opened,
        clock.spawned,
        clock.up,
    ):
        table.pop(first, None)
    return clock


# -- report ----------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def line(label: str, values: list[float], goal: bool = True) -> None:
    p50, p95 = statistics.median(values), pct(values, 95)
    verdict = ""
    if goal:
        verdict = f"   goal p50 <= {GOAL_P50_MS:.0f} ms: " + (
            "met" if p50 * 1000 <= GOAL_P50_MS else "MISSED"
        )
    print(
        f"  {label:34s} n={len(values):3d}  p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
        f"polling/ours {POLL_P50_S / p50:6.1f}x{verdict}"
    )


def parts(clock: Clock) -> None:
    def p50(table: dict[str, float], since: dict[str, float]) -> str:
        values = clock.latencies(table, since)
        return f"{statistics.median(values) * 1000:.1f} ms" if values else "-"

    print(
        f"  {'':34s} of which (p50): ready -> dispatcher woken {p50(clock.woken, clock.ready)}, "
        f"-> task in_progress {p50(clock.dispatched, clock.woken)}, "
        f"-> open() {p50(clock.opened, clock.dispatched)} (worktree, session row, prompt)"
    )


SCENARIOS: dict[str, Callable[[Path, int], Clock]] = {
    "created": lambda root, n: stub_created(root, n),
    "unblocked": lambda root, n: stub_unblocked(root, n),
}


def child(scenario: str, tasks: int, out: Path) -> None:
    """One scenario in this process, its latencies written to ``out`` as JSON (for --against)."""
    with tempfile.TemporaryDirectory(prefix="sf-bench-dispatch-") as tmp:
        clock = SCENARIOS[scenario](Path(tmp) / scenario, tasks)
        wait_for_pools()
    out.write_text(
        json.dumps(
            {
                "opened": clock.latencies(clock.opened),
                "woken": clock.latencies(clock.woken),
                "dispatched": clock.latencies(clock.dispatched, clock.woken),
                "open": clock.latencies(clock.opened, clock.dispatched),
            }
        )
    )


def against(rev: str, opts: argparse.Namespace) -> None:
    """The stub scenarios of revision ``rev`` and of this checkout, interleaved, side by side."""
    here = Path(__file__).resolve().parent.parent
    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sf-bench-against-") as tmp:
        base = Path(tmp)
        old = base / "old"
        old.mkdir()
        archive = subprocess.run(
            ["git", "archive", rev, "server"], cwd=here, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        variants = {f"before ({rev})": old / "server", "after (this checkout)": here / "server"}
        for r in range(opts.rounds):
            order = list(variants.items())
            if r % 2:
                order.reverse()
            for scenario in SCENARIOS:
                for label, server in order:
                    out = base / f"{scenario}-{r}-{len(results)}.json"
                    env = {**os.environ, "PYTHONPATH": str(server)}
                    args = [sys.executable, __file__, "--child", scenario, "--json", str(out)]
                    args += ["--tasks", str(opts.tasks), "--files", str(opts.files)]
                    args += ["--pool-settled"] if opts.pool_settled else []
                    subprocess.run(args, env=env, check=True)
                    got = json.loads(out.read_text())
                    into = results.setdefault((scenario, label), {})
                    for key, values in got.items():
                        into.setdefault(key, []).extend(values)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    settled = "; tasks created once the clone pool is idle" if opts.pool_settled else ""
    print(
        f"repository: {opts.files + 1} files; {opts.rounds} rounds alternating; load {load}"
        + settled
    )
    print("(b) stub provider: ready -> provider open() (dispatch, the checkout included)")
    for scenario in SCENARIOS:
        print(f"  {scenario}:")
        p50s = []
        for label in variants:
            got = results[(scenario, label)]
            line(label, got["opened"])
            print(
                f"  {'':34s} of which (p50): ready -> dispatcher woken "
                f"{statistics.median(got['woken']) * 1000:.1f} ms, -> task in_progress "
                f"{statistics.median(got['dispatched']) * 1000:.1f} ms, -> open() "
                f"{statistics.median(got['open']) * 1000:.1f} ms (checkout, session row, prompt)"
            )
            p50s.append(statistics.median(got["opened"]))
        print(f"  {'':34s} p50 before/after: {p50s[0] / p50s[1]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--cli-tasks", type=int, default=20)
    parser.add_argument("--what-if-tasks", type=int, default=50)
    parser.add_argument(
        "--files", type=int, default=0, help="files in the bench repository (e.g. 5000)"
    )
    parser.add_argument(
        "--sandbox",
        default="off,auto",
        help="agents.sandbox values to measure the CLI part with, side by side",
    )
    parser.add_argument("--against", help="git revision to measure side by side (stub only)")
    parser.add_argument("--rounds", type=int, default=2, help="with --against")
    parser.add_argument(
        "--pool-settled",
        action="store_true",
        help="create each task once the clone pool is idle (steady state; created scenario)",
    )
    parser.add_argument("--child", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    global REPO_FILES, POOL_SETTLED
    REPO_FILES = opts.files
    POOL_SETTLED = opts.pool_settled
    if opts.child:
        child(opts.child, opts.tasks, opts.json)
        return
    if opts.against:
        against(opts.against, opts)
        return
    with tempfile.TemporaryDirectory(prefix="sf-bench-dispatch-") as tmp:
        base = Path(tmp)
        created = stub_created(base / "created", opts.tasks)
        what_if = None
        if opts.what_if_tasks:
            with fast_watcher(WHAT_IF_PROBE_S):
                what_if = stub_created(base / "what-if", opts.what_if_tasks)
        unblocked = stub_unblocked(base / "unblocked", opts.tasks)
        real = {
            mode: cli_created(base / f"cli-{mode}", opts.cli_tasks, mode)
            for mode in opts.sandbox.split(",")
            if opts.cli_tasks
        }
        wait_for_pools()

    print(
        f"a 5 s polling loop (expected, uniform phase)      "
        f"p50 {POLL_P50_S * 1000:7.1f} ms  p95 {POLL_P95_S * 1000:7.1f} ms"
    )
    print(f"repository: {REPO_FILES + 1} files; each task gets a clone (from the pool)")
    print("(b) stub provider: ready -> provider open() (the dispatcher alone)")
    line("created by another connection", created.latencies(created.opened))
    parts(created)
    line("unblocked: its blocker merged", unblocked.latencies(unblocked.opened))
    parts(unblocked)
    if what_if is not None:
        print(
            f"what-if, not shipped: the orchestrator's watcher probing every "
            f"{WHAT_IF_PROBE_S * 1000:.0f} ms without debounce (stub provider)"
        )
        line("created by another connection", what_if.latencies(what_if.opened))
        parts(what_if)
    for mode, clock in real.items():
        print(f"(a) Claude Code CLI against the scripted endpoint, agents.sandbox: {mode}")
        line("provider open() called", clock.latencies(clock.opened))
        parts(clock)
        line("CLI process spawned", clock.latencies(clock.spawned))
        line("CLI up (SDK initialize answered)", clock.latencies(clock.up), goal=False)


if __name__ == "__main__":
    main()
