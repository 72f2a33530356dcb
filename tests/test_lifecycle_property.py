"""Property: however tasks, people, workers and stewards interleave, the lifecycle holds.

A hypothesis state machine drives a real repository and a real store (no agents; the
StubProvider stands in for the conflict ladder's agent) through interleavings of:

- creating tasks (some depending on others), dispatching them (a fenced `dispatch_task`),
  completing an attempt (a real commit on its branch, made with plumbing, then `complete_task`),
  a late completion by a worker whose attempt was cancelled or replaced, a crash of an attempt
  (requeue/fail through the transitions, sometimes leaving a recovery ref), a provider outage
  (`wait_provider`: back to the queue, the attempt given back even when it was the last), an
  attempt stopped at its task's budget (its work committed on the branch, the task
  `budget_exceeded`; a late one is refused), cancel, retry (from `budget_exceeded` with a budget of
  its own), reject, approve (autoMerge drawn per machine);
- bursts of tasks finishing together, so that the queue is long enough to be checked ahead;
- steward rounds whose checks pass, fail (`bad_*`, `needs_*` without `provides_*`) or flake (the
  check script's counter), sometimes with a cancel, a cancel-retry-redispatch, an approval that
  moves the target or a lease take-over arriving while the first round runs its first or second
  check;
- look-ahead checks (`merge.parallelChecks` drawn per machine: 1, 2 or 3): the rounds then
  check several candidates at once, each next one built on the one before, and the interjections
  (a cancel, an approval moving the target, a take-over) arrive while some are speculative;
- the steward's review (`agents.steward.review`, drawn per machine): completed attempts open
  `reviewing` merge requests; reviewer rounds whose (stub) session approves, asks for changes
  with a comment, gives no verdict or crashes, with `maxReviewRounds` drawn per machine;
- lease take-overs: the deposed steward's round must raise LeaseLostError or do nothing, and a
  write fenced with a deposed epoch must be refused;
- stacked branches (`orchestrator.stacking`, drawn per machine): a task whose blockers are in
  review is dispatched on a branch stacked on their heads (a later attempt restacked as the
  worker does); the steward's rounds restack idle dependents and stop (here: requeue) running
  ones whose blocker failed for good.

After every step:

- every commit on main's first-parent line passed its checks on exactly that commit (the check
  script's log) and passes them when run again; main only moves forward;
- every merged task has exactly one merged merge request, its recorded head commit is reachable
  from main and its merge commit is on the first-parent line;
- no work of a cancelled attempt lands: each attempt writes its own file, and a file on main was
  brought by a merged merge request of a non-cancelled attempt whose head holds it (a later attempt
  of the same task continuing on the branch after a retry carries the earlier work on purpose);
  work only saved in a recovery ref never lands, and the ref stays;
- no task lands twice: its files arrive on main in at most one first-parent commit;
- every status change in the event log is a row of the lifecycle tables, each starts from the
  status the log last recorded, and the log's last status of every task and MR is its status now;
- with review on, every merged MR was approved by a review or by a person, and a review asking
  for changes never costs the task an attempt;
- a dependent never lands before its blockers: when it lands, each blocker it had then is
  merged (or ended for good: failed, cancelled, over budget, which no stacked branch survives,
  since nothing of a blocker's work lands without the blocker's own merged MR);
- the graph's facts each task's row keeps (effective priority, blocked, dependencies: what
  `sf task list` reads) are the ones the graph itself gives (people also change priorities).

A defect it found (a deposed steward took its lost lease for a lost race and went round again)
is pinned by the regression test at the end of the file.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from review_helpers import ReviewScript, ScriptedReviewProvider
from steward_helpers import StewardRig, StubProvider, check_tree, checked_ok, commit_files, git
from stoneforge.errors import InvalidInputError, InvalidTransitionError, LeaseLostError
from stoneforge.git.snapshot import RECOVERY_PREFIX, recovery_ref
from stoneforge.git.stacking import RestackConflict
from stoneforge.lifecycle import MR_TRANSITIONS, TASK_TRANSITIONS, MrEvent, TaskEvent
from stoneforge.models import MergeRequest, MergeStatus, ReviewVerdict, Task, TaskStatus
from stoneforge.orchestrator.review import Reviewer
from stoneforge.orchestrator.stacking import record_start, restack_own, start_point
from stoneforge.orchestrator.steward import Steward
from stoneforge.service import Service
from stoneforge.store import Fence

# Hypothesis gives up shrinking a failure after 5 minutes; let it report before the timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

T = TypeVar("T")
LEASE = "orchestrator"
SHARED = "line 1\nline 2\nline 3\n"
#: What a task's work touches besides its own file: `needs_0` is red without `provides_0`,
#: `conflict` rewrites the line every conflict task rewrites.
EXTRAS = ["none", "none", "none", "needs", "provides", "conflict"]
WORK_FILE = re.compile(r"^w_(t\d+)_(\d+)\.txt$")
#: What may happen while a steward round runs one of its checks (or, last, just before it).
INTERJECTIONS = [
    *[None] * 3,
    "cancel",
    "cancel_retry_dispatch",
    "approve",
    "takeover",
    "takeover_before",
]
#: How a running attempt ends at a workers' tick.
OUTCOMES = [
    *["complete"] * 5,
    "bad",
    "crash",
    "crash_saved",
    "crash_committed",
    "provider_outage",
    "over_budget",
    "wait",
]


#: What a blocker must be when its dependent lands: merged, or ended for good.
ENDED_BLOCKER = ("merged", "failed", "cancelled", "budget_exceeded")


def event(text: str) -> None:
    """Hypothesis's statistics event, from the test's own thread only: an interjection runs
    inside the steward's check on the portal's thread, where hypothesis refuses to record."""
    if threading.current_thread() is threading.main_thread():
        hypothesis_event(text)


def work_file(task_id: str, attempt: int) -> str:
    return f"w_{task_id}_{attempt}.txt"


@dataclass
class Attempt:
    """One dispatch of a task, as the worker running it knows it."""

    task_id: str
    number: int
    branch: str
    fence: Fence
    running: bool = True
    cancelled: bool = False


@dataclass
class TaskModel:
    extra: str = "none"
    branch: str | None = None  # the branch the latest attempt works on
    wip: dict[str, str] = field(default_factory=dict)  # recovery ref -> file only saved there


def pick(items: Sequence[T], n: int) -> T:
    """The ``n``-th item, wrapping around (small integers shrink well)."""
    return items[n % len(items)]


class LifecycleMachine(RuleBasedStateMachine):
    #: Set by a subclass: start parameters it does not draw but fixes.
    forced: dict[str, bool] = {}  # noqa: RUF012 - read only

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="sf-lifecycle-prop-"))
        self.rig: StewardRig | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self.models: dict[str, TaskModel] = {}
        self.attempts: dict[tuple[str, int], Attempt] = {}
        self.deposed: list[Steward] = []
        self.deposed_reviewers: list[Reviewer] = []
        self.deposed_fences: list[Fence] = []
        self.holders = 0
        # invariant caches (main only moves forward, so what held for a commit keeps holding)
        self.last_event_id = 0
        self.logged_status: dict[tuple[str, str], str] = {}
        self.verified: set[str] = set()  # first-parent commits of main checked here
        self.reached: set[str] = set()  # merged MRs whose head is known to be on main
        self.arrivals: dict[str, list[str]] = {}  # first-parent commit -> work files it added
        self.tree_cache: dict[str, set[str]] = {}
        self.last_tip: str | None = None
        self.edges: dict[str, set[str]] = {}  # task -> its blockers, as the event log says
        self.actions: list[tuple[str, str]] = []  # the steward's word on stacked dependents

    # -- set-up and helpers --------------------------------------------------------------------

    @initialize(
        auto_merge=st.booleans(),
        flaky_every=st.sampled_from([0, 0, 3, 4]),
        resolve=st.booleans(),
        batch_size=st.sampled_from([1, 2, 4]),
        initial=st.lists(st.sampled_from(EXTRAS), min_size=1, max_size=4),
        review=st.booleans(),
        max_review_rounds=st.integers(1, 2),
        parallel_checks=st.sampled_from([1, 2, 2, 3]),
        stacking=st.booleans(),
    )
    def start(
        self,
        auto_merge: bool,
        flaky_every: int,
        resolve: bool,
        batch_size: int,
        initial: list[str],
        review: bool,
        max_review_rounds: int,
        parallel_checks: int,
        stacking: bool,
    ) -> None:
        auto_merge = self.forced.get("auto_merge", auto_merge)
        stacking = self.forced.get("stacking", stacking)
        self.review_script = ReviewScript()
        self.rig = StewardRig(
            self.tmp / "repo",
            batch_size=batch_size,
            auto_merge=auto_merge,
            max_attempts=3,
            provider=ScriptedReviewProvider(StubProvider(resolve=resolve), self.review_script),
            files={"shared.txt": SHARED},
            flaky_every=flaky_every,
            review=review,
            parallel_checks=parallel_checks,
        )
        self.review = review
        self.rig.config.agents.steward.maxReviewRounds = max_review_rounds
        self.stacking = stacking
        self.rig.config.orchestrator.stacking = stacking
        self.store = self.rig.store
        self.service = Service(self.rig.root, self.rig.config, self.store)
        self._portal_cm = start_blocking_portal()
        self.portal = self._portal_cm.__enter__()
        self.fence = self._take_lease(first=True)
        self._steward: Steward | None = None
        self._reviewer: Reviewer | None = None
        self.last_tip = self.rig.tip()
        for n, extra in enumerate(initial):  # a plan's worth of tasks to begin with
            task = self.store.create_task(f"initial {n + 1} ({extra})")
            self.models[task.id] = TaskModel(extra=extra)

    def teardown(self) -> None:
        if self._portal_cm is not None:
            self._portal_cm.__exit__(None, None, None)
        if self.rig is not None:
            self.rig.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _take_lease(self, *, first: bool = False) -> Fence:
        if not first:  # the holder looks dead (a crash, a stale laptop) so another may take over
            with sqlite3.connect(self.store.path) as db:
                db.execute("UPDATE leases SET holder_pid = 999999999")
        self.holders += 1
        return self.store.acquire_lease(LEASE, f"holder-{self.holders}", ttl_s=20)

    @property
    def steward(self) -> Steward:
        """The lease holder's steward (made on first use, in the portal's event loop: it owns
        anyio primitives; a take-over may happen inside that loop, where it cannot be made)."""
        if self._steward is None:
            rig, fence = self.rig, self.fence
            assert rig is not None

            def make() -> Steward:
                steward = Steward(
                    root=rig.root,
                    config=rig.config,
                    store=self.store,
                    provider=rig.provider,  # type: ignore[arg-type]
                    target="main",
                    agent_env={},
                    note=rig.notes.append,
                    on_landed=lambda: None,
                    fence=fence,
                )
                steward.on_dependent = lambda task_id, action, _text: self.actions.append(
                    (task_id, action)
                )
                return steward

            self._steward = self.portal.call(make)
        return self._steward

    @property
    def reviewer(self) -> Reviewer:
        """The lease holder's reviewer (made in the portal's loop, like the steward)."""
        if self._reviewer is None:
            rig, fence = self.rig, self.fence
            assert rig is not None

            def make() -> Reviewer:
                return Reviewer(
                    root=rig.root,
                    config=rig.config,
                    store=self.store,
                    provider=rig.provider,  # type: ignore[arg-type]
                    target="main",
                    agent_env={},
                    note=rig.notes.append,
                    on_reviewed=lambda: None,
                    fence=fence,
                )

            self._reviewer = self.portal.call(make)
        return self._reviewer

    def _take_over(self) -> None:
        """A new orchestrator takes the lease; the old steward and fence are deposed."""
        old = self.fence
        self.fence = self._take_lease()
        assert self.fence.epoch > old.epoch
        if self._steward is not None:
            self.deposed.append(self._steward)
        if self._reviewer is not None:
            self.deposed_reviewers.append(self._reviewer)
        self.deposed_fences.append(old)
        self._steward = None
        self._reviewer = None

    def _task(self, task_id: str) -> Task:
        return self.store.get_task(task_id)

    def _model(self, task_id: str) -> TaskModel:
        return self.models.setdefault(task_id, TaskModel())  # e.g. a steward's fix task

    def _state(self) -> tuple[str, dict[str, str], dict[str, str]]:
        """What a deposed process must not change: main, every task's and MR's status."""
        tasks = {t.id: t.status.value for t in self.store.list_tasks()}
        mrs = {m.id: m.status.value for m in self.store.list_merge_requests()}
        return self.rig.tip() if self.rig else "", tasks, mrs

    @contextmanager
    def _unchanged(self) -> Iterator[None]:
        before = self._state()
        yield
        assert self._state() == before, "a refused write changed something"

    def _commit_work(self, attempt: Attempt, *, bad: bool = False) -> str:
        """The attempt's own file (and its task's extra) committed on its branch, as a worker."""
        rig = self.rig
        assert rig is not None
        tid, n = attempt.task_id, attempt.number
        tip = rig.tip(attempt.branch)
        files: dict[str, str | None] = {work_file(tid, n): f"{tid} attempt {n}\n"}
        extra = self._model(tid).extra
        if extra == "needs":
            files["needs_0"] = "x\n"
        elif extra == "provides":
            files["provides_0"] = "x\n"
        elif extra == "conflict":
            files["shared.txt"] = f"line 1\nline 2 from {tid} attempt {n}\nline 3\n"
        if bad:
            files[f"bad_{tid}"] = f"{n}\n"
        elif f"bad_{tid}" in self._tree(tip):
            files[f"bad_{tid}"] = None  # this attempt fixes what the last one broke
        head = commit_files(rig.root, tip, files, f"{tid}: attempt {n}", rig.index)
        git(rig.root, "update-ref", f"refs/heads/{attempt.branch}", head, tip)
        return head

    def _tree(self, commit: str) -> set[str]:
        if commit not in self.tree_cache:
            assert self.rig is not None
            self.tree_cache[commit] = set(
                git(self.rig.root, "ls-tree", "--name-only", commit).split()
            )
        return self.tree_cache[commit]

    def _current_attempt(self, task: Task) -> Attempt | None:
        return self.attempts.get((task.id, task.dispatches))

    def _mark_cancelled(self, before: Task) -> None:
        """A cancel of a task that was in progress or in review ends its live attempt for good."""
        if before.status in (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW):
            attempt = self._current_attempt(before)
            if attempt is not None:
                attempt.cancelled = True

    def _dispatch(self, task_id: str, fresh: bool) -> Attempt:
        """Dispatch ``task_id`` with the current fence, on a fresh branch or its last one."""
        rig = self.rig
        assert rig is not None
        model = self._model(task_id)
        task = self.store.dispatch_task(task_id, fence=self.fence)
        assert task.status == TaskStatus.IN_PROGRESS
        n = task.dispatches
        if model.branch is None or fresh:  # a fresh start leaves the old branch as it is
            model.branch = f"sf/{task_id}-{n}"
            start, plan = None, None
            if self.stacking:  # on its blockers' heads while they are in review, as a worker
                try:
                    start, plan = start_point(self.store, rig.root, "main", task_id)
                except RestackConflict:  # as a worker: back to waiting, the attempt given back
                    after = self.store.transition_task(
                        task_id,
                        TaskEvent.REQUEUE,
                        attempt=n,
                        fence=self.fence,
                        give_back_attempt=True,
                        note="its blockers' heads conflict",
                    )
                    assert after.attempts == task.attempts - 1
                    event("blockers' heads conflict: back to waiting")
                    attempt = Attempt(task_id, n, model.branch, self.fence, running=False)
                    self.attempts[(task_id, n)] = attempt
                    return attempt
            git(rig.root, "update-ref", f"refs/heads/{model.branch}", start or rig.tip())
            if plan is not None:
                record_start(self.store, task_id, start, plan, self.fence)
                if start is not None:
                    event("dispatched stacked")
        elif self.stacking and restack_own(  # a later attempt: restacked first, as a worker
            self.store, rig.root, "main", task_id, None, model.branch, self.fence
        ):
            event("restacked at a later attempt")
        attempt = Attempt(task_id, n, model.branch, self.fence)
        self.attempts[(task_id, n)] = attempt
        return attempt

    # -- tasks, the dispatcher and the workers -------------------------------------------------

    @rule(
        deps=st.lists(st.integers(0, 7), max_size=2),
        blocks=st.lists(st.integers(0, 7), max_size=1),
        priority=st.integers(1, 5),
        extra=st.sampled_from(EXTRAS),
    )
    def create_task(self, deps: list[int], blocks: list[int], priority: int, extra: str) -> None:
        """A new task, depending on some; some existing task may come to depend on it."""
        existing = [t.id for t in self.store.list_tasks()]
        depends_on = sorted({pick(existing, d) for d in deps}) if existing else []
        task = self.store.create_task(
            f"task {len(existing) + 1} ({extra})", priority=priority, depends_on=depends_on
        )
        self.models[task.id] = TaskModel(extra=extra)
        for b in blocks if existing else []:
            try:
                self.store.add_dependency(pick(existing, b), task.id)
            except InvalidInputError as exc:  # it would close a cycle: refused, nothing added
                assert "cycle" in str(exc), exc

    @rule(n=st.integers(0, 7), priority=st.integers(1, 5))
    def reprioritize(self, n: int, priority: int) -> None:
        """A person changes a task's priority (its blockers' effective priority follows)."""
        existing = [t.id for t in self.store.list_tasks()]
        if existing:
            self.store.update_task(pick(existing, n), priority=priority)

    @rule(slots=st.integers(0, 3), fresh=st.lists(st.booleans(), min_size=3, max_size=3))
    def dispatcher_tick(self, slots: int, fresh: list[bool]) -> None:
        self._dispatcher(slots, fresh)

    def _dispatcher(self, slots: int, fresh: list[bool]) -> None:
        """The lease holder's dispatcher: start-up recovery of attempts whose orchestrator lost
        the lease (requeued, the attempt given back), then up to ``slots`` ready tasks."""
        for task in self.store.list_tasks(status=TaskStatus.IN_PROGRESS):
            attempt = self._current_attempt(task)
            assert attempt is not None, f"{task.id} is in progress without a dispatch of ours"
            if attempt.fence == self.fence:
                continue
            after = self.store.transition_task(
                task.id,
                TaskEvent.REQUEUE,
                attempt=attempt.number,
                fence=self.fence,
                give_back_attempt=True,
                note="its orchestrator lost the lease",
            )
            assert after.status == TaskStatus.OPEN and after.attempts == task.attempts - 1
            event("recovery requeued an attempt of a deposed orchestrator")
        for n in range(slots):
            ready = self.store.ready_task_ids(stacking=self.stacking)
            if ready:
                self._dispatch(ready[0], fresh[n])

    @precondition(lambda self: any(a.running for a in self.attempts.values()))
    @rule(outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4))
    def workers_tick(self, outcomes: list[str]) -> None:
        self._workers(outcomes)

    def _workers(self, outcomes: list[str]) -> None:
        """Running attempts end: complete, complete red work, crash, or go on running."""
        running = [a for a in self.attempts.values() if a.running]
        for attempt, outcome in zip(running, outcomes, strict=False):
            if outcome != "wait":
                self._finish(attempt, outcome)

    def _finish(self, attempt: Attempt, outcome: str) -> None:
        attempt.running = False
        task = self._task(attempt.task_id)
        current = task.status == TaskStatus.IN_PROGRESS and task.dispatches == attempt.number
        deposed = attempt.fence != self.fence
        if not current:
            # Cancelled or replaced meanwhile: its work is committed on its branch (the worker
            # does that first), its completion is refused (by the lost lease first, if deposed).
            head = self._commit_work(attempt)
            refusal = LeaseLostError if deposed else InvalidTransitionError
            if outcome == "over_budget":  # a late stop at the budget is refused the same way
                with self._unchanged(), pytest.raises(refusal):
                    self.store.transition_task(
                        task.id,
                        TaskEvent.EXCEED_BUDGET,
                        attempt=attempt.number,
                        fence=attempt.fence,
                        note="budget reached",
                    )
                event("late stop at the budget refused")
                return
            with self._unchanged(), pytest.raises(refusal):
                self.store.complete_task(
                    task.id,
                    attempt=attempt.number,
                    branch=attempt.branch,
                    head_commit=head,
                    summary="too late",
                    fence=attempt.fence,
                )
            event("late completion refused")
            return
        if outcome == "provider_outage":
            self._provider_outage(attempt, task)
            return
        if outcome == "over_budget":
            self._over_budget(attempt, task)
            return
        if outcome.startswith("crash"):
            self._crash(attempt, task, committed=outcome == "crash_committed")
            if outcome == "crash_saved":
                self._save_wip(attempt)
            return
        head = self._commit_work(attempt, bad=outcome == "bad")
        call = lambda: self.store.complete_task(  # noqa: E731
            task.id,
            attempt=attempt.number,
            branch=attempt.branch,
            head_commit=head,
            summary=f"attempt {attempt.number}",
            fence=attempt.fence,
            review=self.review,
        )
        if deposed:  # the orchestrator that dispatched it lost the lease
            with self._unchanged(), pytest.raises(LeaseLostError):
                call()
            return
        mr = call()
        opened = MergeStatus.REVIEWING if self.review else MergeStatus.PENDING
        assert mr.status == opened and mr.attempt == attempt.number
        assert self._task(task.id).status == TaskStatus.REVIEW

    def _crash(self, attempt: Attempt, task: Task, *, committed: bool) -> None:
        """The session crashed: some work may be committed; requeued, or failed when its
        attempts are used up (refused if its orchestrator lost the lease)."""
        assert self.rig is not None
        if committed:
            self._commit_work(attempt)
        exhausted = task.attempts >= self.rig.config.orchestrator.maxAttempts
        event_ = TaskEvent.FAIL if exhausted else TaskEvent.REQUEUE
        call = lambda: self.store.transition_task(  # noqa: E731
            task.id, event_, attempt=attempt.number, fence=attempt.fence, note="session crashed"
        )
        if attempt.fence != self.fence:
            with self._unchanged(), pytest.raises(LeaseLostError):
                call()
            return
        after = call()
        assert after.status == (TaskStatus.FAILED if exhausted else TaskStatus.OPEN)

    def _provider_outage(self, attempt: Attempt, task: Task) -> None:
        """The provider failed the session (529, 429, refused): back to the queue with the
        attempt given back, even when it was the last one (refused if the lease was lost)."""
        call = lambda: self.store.transition_task(  # noqa: E731
            task.id,
            TaskEvent.WAIT_PROVIDER,
            attempt=attempt.number,
            fence=attempt.fence,
            note="provider unavailable",
        )
        if attempt.fence != self.fence:
            with self._unchanged(), pytest.raises(LeaseLostError):
                call()
            return
        after = call()
        assert after.status == TaskStatus.OPEN and after.attempts == task.attempts - 1
        event("a provider outage gave an attempt back")

    def _over_budget(self, attempt: Attempt, task: Task) -> None:
        """The task's spending reached its budget: the session handed off, its work is
        committed on the branch, the task waits for a person (refused if the lease is lost)."""
        head = self._commit_work(attempt)
        call = lambda: self.store.transition_task(  # noqa: E731
            task.id,
            TaskEvent.EXCEED_BUDGET,
            attempt=attempt.number,
            fence=attempt.fence,
            note="budget reached",
        )
        if attempt.fence != self.fence:
            with self._unchanged(), pytest.raises(LeaseLostError):
                call()
            return
        after = call()
        assert after.status == TaskStatus.BUDGET_EXCEEDED
        assert self.rig is not None and self.rig.tip(attempt.branch) == head  # nothing lost
        event("an attempt stopped at its budget")

    def _save_wip(self, attempt: Attempt) -> None:
        """Uncommitted work of a crashed session kept in a recovery ref (not on the branch)."""
        rig = self.rig
        assert rig is not None
        tid = attempt.task_id
        wip = f"wip_{tid}_{attempt.number}.txt"
        snap = commit_files(rig.root, rig.tip(attempt.branch), {wip: "unsaved\n"}, "wip", rig.index)
        model = self._model(tid)
        ref = recovery_ref(tid, len(model.wip) + 1)
        git(rig.root, "update-ref", ref, snap)
        model.wip[ref] = wip

    # -- people --------------------------------------------------------------------------------

    def _open_mrs(self) -> list[MergeRequest]:
        done = (MergeStatus.MERGED, MergeStatus.REJECTED)
        return [m for m in self.store.list_merge_requests() if m.status not in done]

    @rule(
        action=st.sampled_from(["cancel", "retry", "reject", "approve", "approve"]),
        n=st.integers(0, 7),
        legal=st.sampled_from([True, True, True, False]),
    )
    def person(self, action: str, n: int, legal: bool) -> None:
        """Someone cancels or retries a task, or rejects or approves a merge request; mostly
        where the tables allow it, sometimes anywhere (then it is refused and changes nothing)."""
        if action in ("cancel", "retry"):
            event_ = TaskEvent.CANCEL if action == "cancel" else TaskEvent.RETRY
            tasks = self.store.list_tasks()
            allowed = [t for t in tasks if (t.status, event_) in TASK_TRANSITIONS]
            pool = allowed if legal and allowed else tasks
            if pool:
                getattr(self, f"_{action}")(pick(pool, n))
            return
        mrs = self._open_mrs()
        if action == "approve":
            awaiting = [m for m in mrs if m.status == MergeStatus.AWAITING_APPROVAL]
            pool = awaiting if legal and awaiting else mrs
        else:
            allowed = [m for m in mrs if (m.status, MrEvent.REJECT) in MR_TRANSITIONS]
            pool = allowed if legal and allowed else mrs
        if pool:
            getattr(self, f"_{action}")(pick(pool, n))

    def _cancel(self, before: Task) -> None:
        if (before.status, TaskEvent.CANCEL) not in TASK_TRANSITIONS:
            with self._unchanged(), pytest.raises(InvalidTransitionError):
                self.service.cancel_task(before.id)
            return
        assert self.service.cancel_task(before.id).status == TaskStatus.CANCELLED
        self._mark_cancelled(before)
        event(f"cancelled a task in {before.status.value}")

    def _retry(self, before: Task) -> None:
        if (before.status, TaskEvent.RETRY) not in TASK_TRANSITIONS:
            with self._unchanged(), pytest.raises(InvalidTransitionError):
                self.service.retry_task(before.id)
            return
        if before.status == TaskStatus.BUDGET_EXCEEDED:  # it continues with a budget of its own
            after = self.service.retry_task(before.id, budget_usd=5.0)
            assert after.budget_usd == 5.0
            event("retried a task stopped at its budget")
        else:
            after = self.service.retry_task(before.id)
        assert after.status == TaskStatus.OPEN and after.attempts == 0

    def _reject(self, mr: MergeRequest) -> None:
        task = self._task(mr.task_id)
        if (mr.status, MrEvent.REJECT) not in MR_TRANSITIONS:
            with self._unchanged(), pytest.raises(InvalidTransitionError):
                self.service.reject_merge(mr.id, "not like this")
            return
        assert self.service.reject_merge(mr.id, "not like this").status == MergeStatus.REJECTED
        after = self._task(mr.task_id)
        if task.status == TaskStatus.REVIEW and mr.attempt == task.dispatches:
            assert after.status == TaskStatus.OPEN, "the rejected attempt's task is sent back"
        else:
            assert after.status == task.status, "a rejection of an older attempt moved its task"
        event(f"rejected an MR in {mr.status.value}")

    def _approve(self, mr: MergeRequest) -> None:
        rig = self.rig
        assert rig is not None
        task = self._task(mr.task_id)
        approvable = (
            mr.status == MergeStatus.AWAITING_APPROVAL
            and task.status == TaskStatus.REVIEW
            and mr.attempt == task.dispatches
        )
        if not approvable:
            with self._unchanged(), pytest.raises(InvalidTransitionError):
                self.service.approve_merge(mr.id)
            event(f"approve refused ({mr.status.value}, task {task.status.value})")
            return
        tip = rig.tip()
        after = self.service.approve_merge(mr.id)
        assert after.approved_at is not None
        event(f"approve: {after.status.value}")
        if after.status == MergeStatus.MERGED:
            assert mr.candidate_commit
            assert git(rig.root, "rev-parse", f"{mr.candidate_commit}^1") == tip
            assert rig.tip() == mr.candidate_commit == after.merged_commit
            assert self._task(mr.task_id).status == TaskStatus.MERGED
        else:
            assert after.status == MergeStatus.PENDING and rig.tip() == tip

    # -- the steward's review ------------------------------------------------------------------

    @precondition(lambda self: self.review)
    @rule(
        verdicts=st.lists(
            st.sampled_from(
                ["approve", "approve", "request_changes", "request_changes", "none", "crash"]
            ),
            min_size=1,
            max_size=3,
        )
    )
    def reviewer_rounds(self, verdicts: list[str]) -> None:
        """The reviewer takes the head of its queue, once per verdict its sessions give."""
        for verdict in verdicts:
            queue = self.reviewer.queue()
            if not queue:
                event("reviewer: nothing to review")
                return
            mr, task = queue[0]
            # A session without a verdict is tried once more: give that try the same answer.
            self.review_script.verdicts[:] = [verdict, verdict]
            self.portal.call(self.reviewer.round)
            after = self.store.get_merge_request(mr.id)
            now = self._task(task.id)
            event(f"review {verdict}: {after.status.value}")
            if verdict == "approve":
                assert after.status == MergeStatus.PENDING
                assert after.reviews[-1].verdict == ReviewVerdict.APPROVE
            elif verdict in ("none", "crash"):
                assert after.status == MergeStatus.AWAITING_APPROVAL
                assert "no verdict in 2 tries" in (after.reason or "")
            else:
                asked = [
                    r
                    for r in self.store.list_reviews(task_id=task.id)
                    if r.verdict == ReviewVerdict.REQUEST_CHANGES
                ]
                rounds = self.rig.config.agents.steward.maxReviewRounds  # type: ignore[union-attr]
                if len(asked) >= rounds:
                    assert after.status == MergeStatus.AWAITING_APPROVAL
                    assert now.status == TaskStatus.REVIEW
                else:
                    assert after.status == MergeStatus.REJECTED
                    assert now.status == TaskStatus.OPEN
                    assert now.attempts == task.attempts - 1, "a review round cost an attempt"
                    assert asked[-1].comments[0].body in (now.note or "")

    # -- stewards and the lease ----------------------------------------------------------------

    def _interject(self, what: str) -> Callable[[], None]:
        """What happens while a check of the round runs (its MRs are `testing`)."""

        def act() -> None:
            if what == "takeover":
                self._take_over()
                return
            if what == "approve":  # another MR lands meanwhile: the target moves under the check
                awaiting = self.store.list_merge_requests(MergeStatus.AWAITING_APPROVAL)
                if awaiting:
                    self._approve(awaiting[0])
                return
            testing = self.store.list_merge_requests(MergeStatus.TESTING)
            if not testing:
                return
            before = self._task(testing[0].task_id)
            assert before.status == TaskStatus.REVIEW, (testing[0], before.status)
            self.service.cancel_task(before.id)
            self._mark_cancelled(before)
            if what == "cancel_retry_dispatch":
                self.service.retry_task(before.id)
                self._dispatch(before.id, fresh=False)

        return act

    @rule(
        extras=st.lists(st.sampled_from(EXTRAS), min_size=2, max_size=6),
        red=st.lists(st.sampled_from([False, False, False, True]), min_size=6, max_size=6),
        interjection=st.sampled_from(INTERJECTIONS),
        at=st.integers(1, 3),
    )
    def burst(self, extras: list[str], red: list[bool], interjection: str | None, at: int) -> None:
        """Several tasks finish at once and the steward runs: a queue long enough to be checked
        ahead (with look-ahead, several candidates at once, some built on others), with
        something happening while it checks."""
        attempts = []
        for n, extra in enumerate(extras):
            task = self.store.create_task(f"burst {n} ({extra})")
            self.models[task.id] = TaskModel(extra=extra)
            attempts.append(self._dispatch(task.id, fresh=True))
        for attempt, bad in zip(attempts, red, strict=False):
            self._finish(attempt, "bad" if bad else "complete")
        self._steward_rounds(interjection, at, 2)

    @rule(
        interjection=st.sampled_from(INTERJECTIONS),
        at=st.integers(1, 2),
        rounds=st.integers(1, 3),
    )
    def steward_rounds(self, interjection: str | None, at: int, rounds: int) -> None:
        self._steward_rounds(interjection, at, rounds)

    @rule(
        slots=st.integers(1, 3),
        fresh=st.lists(st.booleans(), min_size=3, max_size=3),
        outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=4),
        interjection=st.sampled_from(INTERJECTIONS),
        at=st.integers(1, 2),
        rounds=st.integers(1, 3),
    )
    def orchestrator_tick(
        self,
        slots: int,
        fresh: list[bool],
        outcomes: list[str],
        interjection: str | None,
        at: int,
        rounds: int,
    ) -> None:
        """One turn of the orchestrator's loop: dispatch, workers end, steward rounds."""
        self._dispatcher(slots, fresh)
        self._workers(outcomes)
        self._steward_rounds(interjection, at, rounds)

    def _steward_rounds(self, interjection: str | None, at: int, rounds: int) -> None:
        """Up to ``rounds`` rounds of the lease holder's steward; something may happen while
        the first one runs its ``at``-th check (a cancel, a re-dispatch, an approval that moves
        the target, a lease take-over)."""
        rig = self.rig
        assert rig is not None
        if interjection == "takeover_before":
            self._take_over()
            interjection = None
        steward = self.steward
        merged_before = len(self.store.list_merge_requests(MergeStatus.MERGED))
        notes_before = len(rig.notes)
        calls: list[str] = []
        fired: list[str] = []  # main's tip right after it happened
        act = self._interject(interjection) if interjection is not None else None
        real_checks = steward._checks
        running: list[str] = []
        at_once: list[int] = [0]  # the most checks that ran at the same time (look-ahead)

        async def checks(commit: str, **slot: int):  # noqa: ANN202 - the steward's type
            running.append(commit)
            at_once[0] = max(at_once[0], len(running))
            try:
                runs = await real_checks(commit, **slot)
            finally:
                running.remove(commit)
            calls.append(commit)
            if len(calls) == at and act is not None:
                act()
                # Read after it: with look-ahead another candidate may be landing right now,
                # and a landing whose transaction began first ends before a take-over does.
                fired.append(rig.tip())
            return runs

        steward._checks = checks  # type: ignore[method-assign]
        try:
            if interjection == "takeover":
                lost = False
                try:
                    self.portal.call(steward.round)
                except LeaseLostError:
                    lost = True
                if fired:
                    assert lost, "a steward that lost the lease mid-round went on"
                    assert rig.tip() == fired[0], "a steward that lost the lease landed"
                    event("interjection fired: takeover")
                    return
            else:
                self.portal.call(steward.round)
        finally:
            del steward._checks
        if at_once[0] > 1:
            event(f"look-ahead: {at_once[0]} candidates checked at once")
        if fired:
            event(f"interjection fired: {interjection}")
        for _ in range(rounds - 1):
            if not self.portal.call(self.steward.round):
                break
        self._dependents_told()
        for line in rig.notes[notes_before:]:
            if " restacked " in line or " back to waiting" in line:
                event("steward: " + ("restacked" if " restacked " in line else "back to waiting"))
        landed = len(self.store.list_merge_requests(MergeStatus.MERGED)) - merged_before
        event(f"steward rounds landed {min(landed, 2)}{'+' if landed > 2 else ''} MRs")

    def _dependents_told(self) -> None:
        """What the steward said of running stacked dependents reaches their workers: "stop"
        (a blocker failed for good) ends the attempt, back to waiting with it given back."""
        actions, self.actions = self.actions, []
        for task_id, action in actions:
            if action != "stop":
                event("a running dependent was told its base moved")
                continue  # the worker restacks after its session; nothing to do now
            task = self._task(task_id)
            attempt = self._current_attempt(task)
            if attempt is None or not attempt.running or task.status != TaskStatus.IN_PROGRESS:
                continue
            attempt.running = False
            try:
                self.store.transition_task(
                    task_id,
                    TaskEvent.REQUEUE,
                    attempt=attempt.number,
                    fence=attempt.fence,
                    give_back_attempt=True,
                    note="its blocker failed for good",
                )
            except (InvalidTransitionError, LeaseLostError):
                continue
            event("a running dependent went back to waiting")

    @precondition(lambda self: bool(self.deposed_fences))
    @rule(n=st.integers(0, 3))
    def deposed_acts(self, n: int) -> None:
        """A deposed orchestrator wakes up: its steward's round must raise LeaseLostError or do
        nothing, and a dispatch with its fence is refused."""
        with self._unchanged():
            if self.deposed:
                try:
                    # A round with nothing queued returns without a fenced write: it must not
                    # act; one with work raises at its first fenced write (test at the end).
                    progressed = self.portal.call(pick(self.deposed, n).round)
                    event(f"deposed round: changed nothing, returned {progressed}")
                except LeaseLostError:
                    event("deposed round: LeaseLostError")
            if self.deposed_reviewers and self.store.list_merge_requests(MergeStatus.REVIEWING):
                with pytest.raises(LeaseLostError):
                    self.portal.call(pick(self.deposed_reviewers, n).round)
                event("deposed reviewer: LeaseLostError")
            ready = self.store.ready_task_ids()
            if ready:
                with pytest.raises(LeaseLostError):
                    self.store.dispatch_task(ready[0], fence=pick(self.deposed_fences, n))

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def lifecycle_holds(self) -> None:
        if self.rig is None:
            return
        listed = git(
            self.rig.root,
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads/main",
            RECOVERY_PREFIX,
        ).splitlines()
        refs = dict(reversed(line.split()) for line in listed)  # one git call per step
        tip = refs.pop("refs/heads/main")
        self._main_holds_only_checked_commits(tip)
        self._merged_work_is_on_main_once(tip, set(refs))
        self._status_changes_follow_the_tables()
        self._stored_graph_facts_are_the_graphs()

    def _stored_graph_facts_are_the_graphs(self) -> None:
        """Each task's row keeps its graph facts (what `sf task list` reads): they are the ones
        the graph itself gives, after every step."""
        graph = self.store.graph()
        effective = graph.effective_priorities()
        assert self.store.stored_graph_facts() == {
            task_id: (effective[task_id], graph.is_blocked(task_id), graph.depends_on[task_id])
            for task_id in graph.nodes
        }

    def _main_holds_only_checked_commits(self, tip: str) -> None:
        rig = self.rig
        assert rig is not None
        assert self.last_tip is not None
        if tip == self.last_tip:
            return
        git(rig.root, "merge-base", "--is-ancestor", self.last_tip, tip)  # only forward
        self.last_tip = tip
        line = git(rig.root, "rev-list", "--first-parent", "main").split()[:-1]
        new = [c for c in line if c not in self.verified]
        if not new:
            return
        ok = checked_ok(rig.log)
        for commit in new:
            assert commit in ok, f"{commit[:10]} is on main but its checks never passed on it"
            assert check_tree(rig.root, commit, rig.script, self.tmp / "scratch"), (
                f"{commit[:10]} is on main and red"
            )
            added = git(
                rig.root,
                "diff-tree",
                "--no-commit-id",
                "--name-only",
                "--diff-filter=A",
                "-r",
                f"{commit}^1",
                commit,
            ).split()
            self.arrivals[commit] = [f for f in added if WORK_FILE.match(f)]
            assert not [f for f in added if f.startswith("wip_")], "recovery-ref work landed"
            self.verified.add(commit)

    def _merged_work_is_on_main_once(self, tip: str, refs: set[str]) -> None:
        rig = self.rig
        assert rig is not None
        line = set(self.verified)
        merged: dict[str, list[MergeRequest]] = {}
        for mr in self.store.list_merge_requests(MergeStatus.MERGED):
            merged.setdefault(mr.task_id, []).append(mr)
        for task in self.store.list_tasks():
            mrs = merged.get(task.id, [])
            assert len(mrs) <= 1, f"task {task.id} landed {len(mrs)} times"
            assert (task.status == TaskStatus.MERGED) == bool(mrs), (task.id, task.status, mrs)
            for mr in mrs:
                assert mr.head_commit and mr.merged_commit in line, mr
                if self.review:
                    approved = any(r.verdict == ReviewVerdict.APPROVE for r in mr.reviews)
                    assert approved or mr.approved_at is not None, f"{mr.id} landed unreviewed"
                if mr.id not in self.reached:  # main only moves forward: once is enough
                    git(rig.root, "merge-base", "--is-ancestor", mr.head_commit, "main")
                    self.reached.add(mr.id)
                attempt = self.attempts.get((task.id, mr.attempt or 0))
                assert attempt is None or not attempt.cancelled, (
                    f"{mr.id} of cancelled attempt {mr.attempt} of {task.id} landed"
                )
        # Each task's work arrives on main's first-parent line once.
        arrived: dict[str, list[str]] = {}
        for commit, files in self.arrivals.items():
            for task_id in {WORK_FILE.match(f).group(1) for f in files}:  # type: ignore[union-attr]
                arrived.setdefault(task_id, []).append(commit)
        for task_id, commits in arrived.items():
            assert len(commits) == 1, f"work of {task_id} arrived in {len(commits)} commits"
        # Each work file on main came with a merged MR of a live attempt whose head holds it.
        for name in self._tree(tip):
            found = WORK_FILE.match(name)
            if found is None:
                assert not name.startswith("wip_"), f"{name} (recovery-ref work) is on main"
                continue
            task_id, number = found.group(1), int(found.group(2))
            carriers = [
                m for m in merged.get(task_id, []) if name in self._tree(m.head_commit or "")
            ]
            assert carriers, f"{name} is on main but no merged MR of {task_id} holds it"
            writer = self.attempts.get((task_id, number))
            if writer is not None and writer.cancelled:
                assert all((m.attempt or 0) > number for m in carriers), (
                    f"{name} of cancelled attempt {number} of {task_id} landed"
                )
        # Recovery refs keep their work.
        for task_id, model in self.models.items():
            for ref, wip in model.wip.items():
                assert ref in refs, f"recovery ref {ref} of {task_id} is gone"
                assert wip in self._tree(ref), f"recovery ref {ref} lost {wip}"

    def _status_changes_follow_the_tables(self) -> None:
        while batch := self.store.events_since(self.last_event_id):
            for logged in batch:
                self.last_event_id = logged.id
                self._check_event(logged.entity, logged.entity_id, logged.kind, logged.data)
        tasks = {("task", t.id): t.status.value for t in self.store.list_tasks()}
        mrs = {("merge_request", m.id): m.status.value for m in self.store.list_merge_requests()}
        assert self.logged_status == {**tasks, **mrs}, "a status changed without its event"

    def _cannot_run(self, task_id: str, seen: frozenset[str] = frozenset()) -> bool:
        """An open task behind a blocker that ended without landing (failed, cancelled, over
        its budget), directly or through open tasks: the dispatcher does not start it, so it
        counts as ended until a person retries that blocker, as in the queue's own rule
        (`steward/queue._blockers_waiting`; a dependent added to a task already in review)."""
        if self.logged_status.get(("task", task_id)) != TaskStatus.OPEN.value:
            return False
        for dep in self.edges.get(task_id, ()):
            status = self.logged_status.get(("task", dep))
            if status in ENDED_BLOCKER and status != TaskStatus.MERGED.value:
                return True
            if dep not in seen and self._cannot_run(dep, seen | {task_id}):
                return True
        return False

    def _check_event(self, entity: str, entity_id: str | None, kind: str, data: dict) -> None:
        if entity not in ("task", "merge_request") or entity_id is None:
            return
        key = (entity, entity_id)
        if kind == "task.created":
            self.logged_status[key] = TaskStatus.OPEN.value
            self.edges[entity_id] = set(data.get("dependsOn") or [])
            return
        if kind == "dep.added":
            self.edges.setdefault(entity_id, set()).add(data["dependsOn"])
            return
        if kind == "task.merged":  # a dependent lands only after its blockers
            for blocker in self.edges.get(entity_id, ()):
                if self._cannot_run(blocker):
                    continue
                assert self.logged_status.get(("task", blocker)) in ENDED_BLOCKER, (
                    f"{entity_id} landed before its blocker {blocker} "
                    f"({self.logged_status.get(('task', blocker))})"
                )
        if kind == "mr.created":
            self.logged_status[key] = data.get("status", MergeStatus.PENDING.value)
            return
        if "from" not in data:
            return
        assert data["from"] == self.logged_status.get(key), (
            key,
            kind,
            data,
            self.logged_status.get(key),
        )
        if "status" not in data:
            return
        if entity == "task":
            row = (TaskStatus(data["from"]), TaskEvent(data["event"]))
            assert TASK_TRANSITIONS.get(row) == TaskStatus(data["status"]), (key, kind, data)
        else:
            row_mr = (MergeStatus(data["from"]), MrEvent(data["event"]))
            assert MR_TRANSITIONS.get(row_mr) == MergeStatus(data["status"]), (key, kind, data)
        self.logged_status[key] = data["status"]


LifecycleMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLifecycleHoldsUnderAnyInterleaving = LifecycleMachine.TestCase


class LookaheadMachine(LifecycleMachine):
    """The same machine and invariants, set up for look-ahead checks: autoMerge on, no review
    in front of the queue, `merge.parallelChecks` 2 or 3, small batches (so a burst makes a
    chain of several batches, each next one built on the one before)."""

    @initialize(
        flaky_every=st.sampled_from([0, 0, 3, 4]),
        resolve=st.booleans(),
        batch_size=st.sampled_from([1, 2]),
        initial=st.lists(st.sampled_from(EXTRAS), min_size=1, max_size=4),
        parallel_checks=st.sampled_from([2, 3]),
    )
    def start(  # type: ignore[override]
        self,
        flaky_every: int,
        resolve: bool,
        batch_size: int,
        initial: list[str],
        parallel_checks: int,
    ) -> None:
        super().start(
            auto_merge=True,
            flaky_every=flaky_every,
            resolve=resolve,
            batch_size=batch_size,
            initial=initial,
            review=False,
            max_review_rounds=1,
            parallel_checks=parallel_checks,
            stacking=False,
        )


LookaheadMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLookaheadHoldsUnderAnyInterleaving = LookaheadMachine.TestCase


class StackingMachine(LifecycleMachine):
    """The same machine with stacked branches always on, and tasks made to depend on one in
    review, so dependents start stacked, are restacked and sent back to waiting often.
    `SF_STACKING_EXAMPLES=150` explores further than the suite's few examples."""

    forced = {"stacking": True, "auto_merge": True}  # noqa: RUF012 - landings, not approvals

    @rule(n=st.integers(0, 7), extra=st.sampled_from(EXTRAS))
    def create_dependent(self, n: int, extra: str) -> None:
        """A new task depending on one in review: the next dispatch stacks it on that one."""
        in_review = [t.id for t in self.store.list_tasks(status=TaskStatus.REVIEW)]
        if in_review:
            blocker = pick(in_review, n)
            task = self.store.create_task(f"after {blocker} ({extra})", depends_on=[blocker])
            self.models[task.id] = TaskModel(extra=extra)


StackingMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("SF_STACKING_EXAMPLES", "6")),
    stateful_step_count=40,  # a blocker must reach review, its dependent start, then move on
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStackedBranchesHoldUnderAnyInterleaving = StackingMachine.TestCase


# -- a defect the machine found ---------------------------------------------------------------


async def test_a_deposed_steward_with_a_queued_mr_stops_at_its_first_fenced_write(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=["true"])
    _, mr = rig.submit("Feature", {"feature.txt": "1\n"})
    fence = rig.store.acquire_lease(LEASE, "old", ttl_s=20)
    old = rig.make_steward(fence=fence)
    with sqlite3.connect(rig.store.path) as db:  # the old holder looks dead: a take-over
        db.execute("UPDATE leases SET holder_pid = 999999999")
    rig.store.acquire_lease(LEASE, "new", ttl_s=20)
    try:
        with pytest.raises(LeaseLostError):
            await old.round()
    finally:
        assert rig.store.get_merge_request(mr.id).status == MergeStatus.PENDING
        rig.close()
