"""The dispatcher: one per repository, event-driven, filling agent slots with ready tasks.

It wakes when something happens, never on a timer: a worker run ends, the steward lands a merge,
or the store changes under it (the CLI or the editor created a task: seen through SQLite's
``data_version``, see :mod:`stoneforge.store_watch`). The only timers are the lease heartbeat,
the backoff before a crashed task is retried and the provider's next probe.

Provider health is not task health: every session goes through a
:class:`~stoneforge.orchestrator.provider_sessions.TrackedProvider`, and
:class:`~stoneforge.orchestrator.provider_health.ProviderHealth` decides whether a task may start
now (circuit breaker, concurrency after rate limits, credentials). A task whose session the
provider failed waits in the queue with its attempt given back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import AgentProvider, claude_code_provider
from stoneforge.background import foreground
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import LeaseHeldError, LeaseLostError, StoreBusyError
from stoneforge.git.clone_pool import pool_for, pool_size, refresh_pool, stop_pool
from stoneforge.git.merge import enable_shared_rerere
from stoneforge.git.repo import resolve_target_branch
from stoneforge.models import BudgetHold, Event, TaskStatus, utcnow
from stoneforge.orchestrator.budgets import dispatch_holds, held_task
from stoneforge.orchestrator.dispatch_holds import DispatchHolds
from stoneforge.orchestrator.idleness import board_is_idle
from stoneforge.orchestrator.provider_health import ProviderHealth
from stoneforge.orchestrator.provider_sessions import Credentials, TrackedProvider
from stoneforge.orchestrator.provider_status import ProviderStatus
from stoneforge.orchestrator.recovery import recover_orphans
from stoneforge.orchestrator.review import Reviewer
from stoneforge.orchestrator.stacking import stack_plan
from stoneforge.orchestrator.steward import Steward
from stoneforge.orchestrator.view import OrchestratorView
from stoneforge.orchestrator.wakeups import wakes_dispatcher, wakes_steward
from stoneforge.orchestrator.worker import RunResult, SlotState, WorkerRun
from stoneforge.store import Fence, Store
from stoneforge.store_watch import StoreWatcher

log = logging.getLogger("stoneforge.orchestrator")

LEASE_NAME = "orchestrator"
LEASE_TTL_S = 20.0
HEARTBEAT_S = 5.0
RECENT_EVENTS = 12
#: A task's run that fails inside Stoneforge (not the agent) is tried again without spending an
#: attempt this many times in a row; after that the errors count as failed attempts.
INTERNAL_ERRORS_NOT_COUNTED = 2


@dataclass(frozen=True)
class Board:
    """What a dispatch round reads of the store, off the event loop."""

    #: Open, unblocked tasks of active plans (or none), most urgent first.
    ready: list[str]
    #: Plan and day budgets that hold dispatch back.
    holds: list[BudgetHold]
    #: The plan of each open task (read only while a budget holds).
    plans: dict[str, str | None]


class Orchestrator:
    """Dispatches ready tasks to worker runs (and, with a steward, lands their work)."""

    def __init__(
        self,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        *,
        provider: AgentProvider | None = None,
        max_concurrent: int | None = None,
        until_idle: bool = False,
        agent_env: dict[str, str] | None = None,
        on_change: Callable[[], None] = lambda: None,
        worker_provider: AgentProvider | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.max_concurrent = max_concurrent or config.orchestrator.maxConcurrent
        self.until_idle = until_idle
        self.agent_env = dict(agent_env or {})
        self.on_change = on_change
        #: Called with each line added to the recent events (a plain-text log for non-terminals).
        self.on_note: Callable[[str], None] | None = None
        credentials = Credentials(config.agents.credentials, {**os.environ, **self.agent_env})
        self.health = ProviderHealth(
            max_concurrent=self.max_concurrent,
            credentials=credentials.names,
            backoff_s=config.orchestrator.providerBackoffS,
            backoff_max_s=config.orchestrator.providerBackoffMaxS,
            note=self.note,
            on_change=self.wake,
        )
        if provider is None:
            provider = claude_code_provider(
                cli_path=config.agents.worker.cliPath, sandbox=config.agents.sandbox
            )
        #: Every agent session goes through it: provider health sees what the API answers.
        self.provider = TrackedProvider(
            provider,
            self.health,
            credentials,
            owner="steward",
        )
        #: Where worker sessions run (the Ray backend), tracked the same way; the steward and
        #: director stay on `provider`.
        self.worker_provider = (
            TrackedProvider(worker_provider, self.health, credentials, owner="steward")
            if worker_provider is not None
            else None
        )
        self._provider_status = ProviderStatus(store)
        #: Called when the merge request(s) the steward checks change (None: none).
        self.on_merging: Callable[[str | None], None] = lambda current: None
        self.target = ""
        self.runs: dict[str, WorkerRun] = {}
        self.recent: deque[str] = deque(maxlen=RECENT_EVENTS)
        self.steward: Steward | None = None  # made in run(), once the target is known
        self.reviewer: Reviewer | None = None  # likewise: reviews MRs before the steward
        self._lease_token = uuid.uuid4().hex
        #: Proof of holding the lease, given to every run and the steward (set in run()).
        self.fence: Fence | None = None
        self._not_before: dict[str, float] = {}
        #: Tasks whose blockers' heads conflicted at their start, with those heads (stacking).
        self._stack_conflicts: dict[str, dict[str, str]] = {}
        #: Task -> internal errors of its runs in a row (see INTERNAL_ERRORS_NOT_COUNTED).
        self._internal_errors: dict[str, int] = {}
        #: Plan and day budgets holding dispatch back, as last seen (budgets, issue 15).
        self.budget_holds = DispatchHolds(store, self.note)
        self._wake = asyncio.Event()
        #: Ends the mark a wake-up set for background work to wait for (see `wake`).
        self._round_pending: Callable[[], None] | None = None
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: StoreWatcher | None = None
        #: The dispatcher's own connection for its whole-board reads, in a worker thread: they
        #: neither stall the loop nor hold the lock of the connection the loop shares.
        self._reader: Store | None = None
        self._reader_lock = threading.Lock()
        #: The ready set the last dispatch round read (the live view's queue length).
        self._ready: list[str] = []
        self.started = asyncio.Event()

    # -- public control ------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask the dispatcher to look again (safe from the loop thread only). Background work
        waits for the round (a landing's clean-up starts right after it woke us)."""
        if self._round_pending is None:
            self._round_pending = foreground.begin()
        self._wake.set()

    def _end_round_mark(self) -> None:
        if self._round_pending is not None:
            self._round_pending()
            self._round_pending = None

    def wake_threadsafe(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def request_stop(self) -> None:
        """Graceful stop: sessions end, their work is kept, tasks go back to the queue."""
        self._stop_requested = True
        self.wake()

    def force_stop(self) -> None:
        """Kill every agent now (a second Ctrl-C); the caller then cancels :meth:`run`.

        Nothing is saved here: the sessions stay `running`, and the next start's recovery
        saves their work in recovery refs and requeues their tasks with the attempt given back.
        """
        self._stop_requested = True
        for run in list(self.runs.values()):
            run.kill()
        if self.steward is not None:
            self.steward.kill()
        if self.reviewer is not None:
            self.reviewer.kill()

    def view(self) -> OrchestratorView:
        queued = len([t for t in self._ready if t not in self.runs])  # no store read here
        pause = self.steward.landing_paused if self.steward is not None else None
        outage = self.health.unavailable()
        return OrchestratorView(
            max_concurrent=self.max_concurrent,
            slots=[run.slot for run in self.runs.values()],
            queued=queued,
            handoff_at_tokens=self.config.orchestrator.handoffAtTokens,
            recent=list(self.recent),
            merging=getattr(self.steward, "current", None),
            landing_paused=pause.line if pause is not None else None,
            reviewing=self.reviewer.current if self.reviewer is not None else None,
            provider_unavailable=outage.line if outage is not None else None,
            concurrency_limit=self.health.limit,
            budget_holds=[hold.reason for hold in self.budget_holds.holds],
        )

    def note(self, text: str) -> None:
        line = f"{utcnow():%H:%M:%S} {text}"
        self.recent.append(line)
        if self.on_note is not None:
            self.on_note(line)
        self.on_change()

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped (or, with ``until_idle``, until nothing is left to do)."""
        self._loop = asyncio.get_running_loop()
        self.fence = self.store.acquire_lease(LEASE_NAME, self._lease_token, LEASE_TTL_S)
        try:
            self.target = await to_thread.run_sync(
                lambda: resolve_target_branch(self.root, self.config.merge.targetBranch)
            )
            await to_thread.run_sync(lambda: enable_shared_rerere(self.root))
            # One prepared clone per slot, filling in the background from now on, so the first
            # dispatches find them too.
            size = pool_size(self.max_concurrent)
            await to_thread.run_sync(
                lambda: pool_for(self.root, self._worktree_dir(), self.target, size)
            )
            self.steward = Steward(
                root=self.root,
                config=self.config,
                store=self.store,
                provider=self.provider,
                target=self.target,
                agent_env=self.agent_env,
                note=self.note,
                on_landed=self.wake,
                fence=self.fence,
                steward_id=f"e{self.fence.epoch}",  # its check checkout is named by the lease
            )
            self.steward.on_current = self.on_merging
            self.steward.on_dependent = self._on_dependent
            self.reviewer = Reviewer(
                root=self.root,
                config=self.config,
                store=self.store,
                provider=self.provider.for_owner("reviewer"),
                target=self.target,
                agent_env=self.agent_env,
                note=self.note,
                on_reviewed=self._after_review,
                fence=self.fence,
            )
            for line in await to_thread.run_sync(lambda: recover_orphans(self.store, self.fence)):
                self.note(line)
            # Dispatch latency matters here: probe often (a PRAGMA, no table read) and don't wait.
            self._watcher = StoreWatcher(
                self.store.path, self._on_store_events, debounce_s=0, probe_interval_s=0.01
            ).start()
            self.note(f"orchestrator started (pid {os.getpid()}, {self.max_concurrent} slots)")
            self.started.set()
            async with anyio.create_task_group() as group:
                group.start_soon(self._heartbeat)
                if self.steward is not None:
                    group.start_soon(self.steward.run)
                if self.reviewer is not None:
                    group.start_soon(self.reviewer.run)
                await self._dispatch_loop(group)
                group.cancel_scope.cancel()
        finally:
            self._end_round_mark()
            if self._watcher is not None:
                self._watcher.stop()
            stop_pool(self.root, self._worktree_dir())
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            try:
                self.store.release_lease(LEASE_NAME, self._lease_token)
            except StoreBusyError as exc:  # it ends with this process (or its time to live)
                self.note(f"the orchestrator lease was not released: {exc}")
            self.note("orchestrator stopped")

    def _worktree_dir(self) -> Path:
        return self.config.orchestrator.worktree_dir(self.root)

    async def _dispatch_loop(self, group: anyio.abc.TaskGroup) -> None:
        while not self._stop_requested:
            self._wake.clear()
            await self._dispatch(group)
            if self.until_idle and await to_thread.run_sync(self.is_idle):
                self.note("idle: nothing open, in progress or in review")
                break
            timeout = self._next_retry_in()
            with anyio.move_on_after(timeout if timeout is not None else float("inf")):
                await self._wake.wait()
        # Graceful stop: tell the steward (it starts nothing new) and every run to stop, all at
        # once (each may wait for its CLI to answer the interrupt), and wait until each run has
        # saved its work.
        async with anyio.create_task_group() as stopping:
            if self.steward is not None:
                stopping.start_soon(self.steward.stop)
            if self.reviewer is not None:
                stopping.start_soon(self.reviewer.stop)
            for run in list(self.runs.values()):
                stopping.start_soon(run.stop, "shutdown")
        while self.runs:
            self._wake.clear()
            await self._wake.wait()

    def _own_connection(self) -> Store:
        with self._reader_lock:  # opened by the first worker thread that reads
            if self._reader is None:
                self._reader = self.store.sibling()
            return self._reader

    def _read_board(self) -> Board:
        """The ready set and the budget holds (called in a worker thread)."""
        store = self._own_connection()
        holds = dispatch_holds(store, self.config.budgets)
        plans = store.open_task_plans() if holds else {}
        ready = store.ready_task_ids(stacking=self.config.orchestrator.stacking)
        return Board(ready=ready, holds=holds, plans=plans)

    async def _dispatch(self, group: anyio.abc.TaskGroup) -> None:
        try:
            board = await to_thread.run_sync(self._read_board)
            self._ready = board.ready
            if self._stop_requested:  # asked while the board was read
                return
            holds = self.budget_holds.update(board.holds)
            now = time.monotonic()
            # With stacking, a task whose blockers are in review is ready too (stacked on them).
            for task_id in board.ready:
                if self.max_concurrent - len(self.runs) <= 0:
                    break
                if task_id in self.runs or self._not_before.get(task_id, 0) > now:
                    continue
                if self._stack_held(task_id):
                    continue  # its blockers' heads conflict: it waits for one of them to land
                if holds and held_task(holds, board.plans.get(task_id)) is not None:
                    continue  # its plan's budget, or the day's, is spent
                if not self.health.admit(len(self.runs), task_id).allowed:
                    break  # full, or the provider is unavailable: every task waits alike
                if not self._start(group, task_id):
                    self.health.run_ended(task_id)  # it never ran (a probe is due again)
        finally:
            # Changes only: a recorded event wakes us again through the store watcher.
            self._provider_status.update(self.health.unavailable())
            self._end_round_mark()  # the runs started hold their own marks

    def _plans_of_ready(self) -> dict[str, str | None]:
        return self._own_connection().open_task_plans()

    def _start(self, group: anyio.abc.TaskGroup, task_id: str) -> bool:
        try:
            task = self.store.dispatch_task(task_id, fence=self.fence)
        except LeaseLostError:
            self._lease_lost()
            return False
        except Exception as exc:  # someone else changed it first: look again next round
            log.info("not dispatching %s: %s", task_id, exc)
            return False
        slot = SlotState(task_id=task.id, title=task.title)
        run = WorkerRun(
            root=self.root,
            config=self.config,
            store=self.store,
            provider=self.provider.for_owner(task.id),
            task=task,
            target=self.target,
            agent_env=self.agent_env,
            slot_index=self._free_slot_index(),
            slot=slot,
            on_change=self.on_change,
            on_commit=self._on_worker_commit,
            fence=self.fence,
            session_provider=(
                self.worker_provider.for_owner(task.id) if self.worker_provider else None
            ),
        )
        run.dispatching = foreground.begin()  # until its session is opened
        self.runs[task.id] = run
        self._not_before.pop(task.id, None)
        self.note(f"{task.id} dispatched (attempt {task.attempts}): {task.title}")
        group.start_soon(self._run_worker, run)
        return True

    def _free_slot_index(self) -> int:
        """The lowest slot number no running task holds (its `SF_TASK_SLOT`)."""
        used = {run.slot_index for run in self.runs.values()}
        return next(n for n in range(len(used) + 1) if n not in used)

    async def _run_worker(self, run: WorkerRun) -> None:
        task_id = run.task.id
        result: RunResult | None = None
        try:
            result = await run.run()
        except LeaseLostError:
            self._lease_lost()
        except Exception as exc:  # a bug in a run must not take the dispatcher down
            log.exception("worker run for %s failed", task_id)
            strikes = self._internal_errors[task_id] = self._internal_errors.get(task_id, 0) + 1
            result = run._internal_error(exc, counted=strikes > INTERNAL_ERRORS_NOT_COUNTED)
        else:
            self._internal_errors.pop(task_id, None)
        finally:
            run.dispatching()
            self.runs.pop(task_id, None)
            self.health.run_ended(task_id)
            if result is not None:
                self._after_run(result)
            self.wake()
            if self.steward is not None:
                self.steward.wake()
            if self.reviewer is not None:
                self.reviewer.wake()

    def _after_review(self) -> None:
        # A review passed (the steward has a new MR) or sent a task back (the dispatcher has).
        self.wake()
        if self.steward is not None:
            self.steward.wake()

    def _on_worker_commit(self) -> None:
        # A new commit may change the conflict forecast: the steward recomputes it.
        if self.steward is not None:
            self.steward.wake()

    def _stack_held(self, task_id: str) -> bool:
        """Whether ``task_id``'s last start found its blockers' heads in conflict and they are
        still the same: no base to stack it on until one lands or changes."""
        held = self._stack_conflicts.get(task_id)
        if held is None:
            return False
        if stack_plan(self.store, self.store.get_task(task_id)).heads == held:
            return True
        del self._stack_conflicts[task_id]
        return False

    def _on_dependent(self, task_id: str, action: str, text: str) -> None:
        """The steward about a stacked dependent whose agent runs: its blocker landed or changed
        ("tell": a message into its session; the branch is restacked after it), or failed for
        good ("stop": the run ends and the task waits again, its work kept)."""
        run = self.runs.get(task_id)
        if run is None or self._loop is None:
            return
        if action == "stop":
            self.note(f"{task_id} stops: {text}")
            asyncio.run_coroutine_threadsafe(run.stop(text), self._loop)
        else:
            asyncio.run_coroutine_threadsafe(run.base_moved(text), self._loop)

    def _after_run(self, result: RunResult) -> None:
        if result.stack_conflict is not None:
            self._stack_conflicts[result.task_id] = result.stack_conflict
            self.note(f"{result.task_id} waits for a blocker to land: {result.reason[:120]}")
        elif result.provider_fault is not None:  # no backoff of its own: the provider's circuit
            self.note(
                f"{result.task_id} waits for the provider ({result.provider_fault.label}); "
                "its attempt is not counted"
            )
        elif result.retry:
            task = self.store.get_task(result.task_id)
            delay = self.config.orchestrator.retryBackoffS * 2 ** max(task.attempts - 1, 0)
            self._not_before[result.task_id] = time.monotonic() + delay
            self.note(f"{result.task_id} requeued (retry in {delay:.1f}s): {result.reason[:120]}")
        elif result.status == TaskStatus.REVIEW:
            self.note(f"{result.task_id} completed; merge request opened")
        elif result.status == TaskStatus.FAILED:
            self.note(f"{result.task_id} failed: {result.reason[:120]}")
        elif result.status == TaskStatus.BUDGET_EXCEEDED:
            self.note(f"{result.task_id} stopped at its budget: {result.reason[:160]}")

    def _next_retry_in(self) -> float | None:
        times = list(self._not_before.values())
        if (health_at := self.health.next_check_at()) is not None:
            times.append(health_at)  # the same monotonic clock
        if self.budget_holds.day_starts_at is not None:  # a day budget holds: look again at its end
            times.append(self.budget_holds.day_starts_at)
        if not times:
            return None
        return max(min(times) - time.monotonic(), 0.0) + 0.01

    async def _heartbeat(self) -> None:
        last_beat = time.monotonic()
        while True:
            await anyio.sleep(HEARTBEAT_S)
            try:
                # Off the loop: a heartbeat waiting for the store's lock must not stall dispatch.
                held = await to_thread.run_sync(
                    self.store.heartbeat_lease, LEASE_NAME, self._lease_token
                )
            except StoreBusyError as exc:
                if time.monotonic() - last_beat < LEASE_TTL_S:
                    self.note(f"lease heartbeat not written, trying again: {exc}")
                    continue
                # Our lease may have expired: another orchestrator can take over now.
                log.error("no lease heartbeat for %.0f s; stopping: %s", LEASE_TTL_S, exc)
                self.note(
                    f"no lease heartbeat could be written for {LEASE_TTL_S:g} s (the store stayed "
                    f"locked); stopping: {exc}"
                )
                self.request_stop()
                return
            if not held:
                self._lease_lost()
                return
            last_beat = time.monotonic()

    def _lease_lost(self) -> None:
        """Another orchestrator took over: stop. Our fenced writes already fail, so nothing we
        still do lands, marks merged, removes a checkout or kills a session."""
        if not self._stop_requested:
            log.error("the orchestrator lease was taken over; stopping")
            self.note("the orchestrator lease was taken over by another process; stopping")
        self.request_stop()

    def _on_store_events(self, events: list[Event]) -> None:
        """From the watcher thread: wake up for new work; stop runs of cancelled tasks; wake the
        steward for what can change its queue."""
        if any(event.kind == "task.merged" for event in events):  # `sf merge approve` landed
            refresh_pool(self.root, self._worktree_dir())
        for event in events:
            if event.kind == "task.cancelled" and event.entity_id in self.runs:
                run = self.runs[event.entity_id]
                if self._loop is not None:
                    asyncio.run_coroutine_threadsafe(run.stop("cancelled"), self._loop)
        # Token counts and other session updates wake nobody: a dispatch round reads the whole
        # board, a steward round also forecasts every pair of branches (see `wakeups`).
        steward_kinds = wakes_steward(events)
        # With --until-idle, a merge request's move (to awaiting approval) may make it idle.
        mr_moved = any(event.entity == "merge_request" for event in events)
        if wakes_dispatcher(events) or (self.until_idle and mr_moved):
            self.wake_threadsafe()
        if self._loop is None or not steward_kinds:
            return
        if self.steward is not None:
            self._loop.call_soon_threadsafe(self.steward.wake)
        if self.reviewer is not None:  # merge requests to review come with the same kinds
            self._loop.call_soon_threadsafe(self.reviewer.wake)

    # -- idleness ------------------------------------------------------------------------------

    def is_idle(self) -> bool:
        """Nothing open that can still run, nothing in progress, nothing in review (see
        `board_is_idle`)."""
        if self.runs:
            return False
        store = self._own_connection()  # the whole board: not on the loop's shared connection
        plans = self._plans_of_ready() if self.budget_holds.holds else {}
        return board_is_idle(store, lambda task_id: self.budget_holds.holds_back(task_id, plans))


def lease_holder_message(store: Store) -> str | None:
    holder = store.lease_holder(LEASE_NAME)
    if holder is None:
        return None
    return f"an orchestrator is running (pid {holder['pid']} on {holder['host']})"


__all__ = [
    "LEASE_NAME",
    "LeaseHeldError",
    "Orchestrator",
    "OrchestratorView",
    "lease_holder_message",
]
