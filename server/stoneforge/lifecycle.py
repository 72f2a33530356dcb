"""The task and merge-request lifecycles as data: the only place a state is decided.

Every state write in the store goes through :func:`next_task_status` or :func:`next_mr_status`
inside the same transaction that reads the current state (a compare-and-set), so a move that the
tables below do not list raises :class:`~stoneforge.errors.InvalidTransitionError` and never
silently wins. A cancel that arrives while a worker finishes therefore beats the worker's
"complete": the worker's write finds the task `cancelled`, and `cancelled` has no `complete`.

Writes on behalf of one attempt of a task also name that attempt (the task's ``dispatches``
counter, which only ever grows): after a cancel and a retry the old attempt's writes find a newer
attempt and are refused, so nothing of a cancelled attempt lands.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from stoneforge.errors import InvalidTransitionError
from stoneforge.models import MergeStatus, TaskStatus

log = logging.getLogger("stoneforge.lifecycle")


class TaskEvent(StrEnum):
    DISPATCH = "dispatch"  # the dispatcher gives a ready task a slot
    COMPLETE = "complete"  # the attempt ended with commits on the task branch: a merge request
    REQUEUE = "requeue"  # the attempt ended without a result and may run again
    #: The provider failed the session (outage, rate limit): back to the queue, attempt given back
    WAIT_PROVIDER = "wait_provider"
    FAIL = "fail"  # attempts used up, or the merge queue gave up
    SEND_BACK = "send_back"  # the merge request was refused (checks, conflicts, a reviewer)
    LAND = "land"  # the task's work is on the target
    CANCEL = "cancel"  # a person cancelled it; final for the attempt it cancels
    RETRY = "retry"  # a person asks for a fresh start after failed/cancelled
    # -- budgets (issue 15) --
    EXCEED_BUDGET = "exceed_budget"  # the task's spending reached its budget: a person decides


class MrEvent(StrEnum):
    PASS_REVIEW = "pass_review"  # the steward's review approved the change: on to the checks
    REQUEST_CHANGES = "request_changes"  # the review asked for changes: the task goes back
    CHECK = "check"  # the steward builds its candidate and starts the checks
    REQUEUE = "requeue"  # back in the queue: batch rebuilt, target moved, approved after a move
    AWAIT_APPROVAL = "await_approval"  # checks passed, autoMerge is off; or review gave up
    LAND = "land"  # the checked candidate is on the target
    FAIL_CHECKS = "fail_checks"  # a check failed, also on its retry
    CONFLICT = "conflict"  # the conflict ladder could not resolve it
    REJECT = "reject"  # a reviewer refused it, or its task is gone / its branch is gone


_O, _P, _R = TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW
_M, _F, _C = TaskStatus.MERGED, TaskStatus.FAILED, TaskStatus.CANCELLED
_B = TaskStatus.BUDGET_EXCEEDED

#: (from, event) -> to. Anything else is illegal.
TASK_TRANSITIONS: dict[tuple[TaskStatus, TaskEvent], TaskStatus] = {
    (_O, TaskEvent.DISPATCH): _P,
    (_P, TaskEvent.COMPLETE): _R,
    (_P, TaskEvent.REQUEUE): _O,
    (_P, TaskEvent.WAIT_PROVIDER): _O,
    (_P, TaskEvent.FAIL): _F,
    (_R, TaskEvent.FAIL): _F,
    (_R, TaskEvent.SEND_BACK): _O,
    (_R, TaskEvent.LAND): _M,
    (_O, TaskEvent.CANCEL): _C,
    (_P, TaskEvent.CANCEL): _C,
    (_R, TaskEvent.CANCEL): _C,
    (_F, TaskEvent.CANCEL): _C,
    (_F, TaskEvent.RETRY): _O,
    (_C, TaskEvent.RETRY): _O,
    # -- budgets (issue 15): a task over its budget waits for a person (retry with more, cancel)
    (_P, TaskEvent.EXCEED_BUDGET): _B,
    (_B, TaskEvent.RETRY): _O,
    (_B, TaskEvent.CANCEL): _C,
}

_PE, _TE, _AW = MergeStatus.PENDING, MergeStatus.TESTING, MergeStatus.AWAITING_APPROVAL
_RV = MergeStatus.REVIEWING
_ME, _CO, _TF, _RE = (
    MergeStatus.MERGED,
    MergeStatus.CONFLICT,
    MergeStatus.TEST_FAILED,
    MergeStatus.REJECTED,
)

#: A merge request starts `reviewing` when `agents.steward.review` is on (else `pending`).
MR_TRANSITIONS: dict[tuple[MergeStatus, MrEvent], MergeStatus] = {
    (_RV, MrEvent.PASS_REVIEW): _PE,
    (_RV, MrEvent.REQUEST_CHANGES): _RE,
    # The review rounds are used up, or the reviewer gave no verdict twice: a person decides.
    (_RV, MrEvent.AWAIT_APPROVAL): _AW,
    (_RV, MrEvent.REJECT): _RE,
    (_PE, MrEvent.CHECK): _TE,
    (_TE, MrEvent.REQUEUE): _PE,
    (_AW, MrEvent.REQUEUE): _PE,
    (_TE, MrEvent.AWAIT_APPROVAL): _AW,
    (_TE, MrEvent.LAND): _ME,
    (_AW, MrEvent.LAND): _ME,
    # Its branch was already on the target: accepted only when the task's recorded commits are.
    (_PE, MrEvent.LAND): _ME,
    (_TE, MrEvent.FAIL_CHECKS): _TF,
    (_PE, MrEvent.CONFLICT): _CO,
    (_TE, MrEvent.CONFLICT): _CO,
    (_PE, MrEvent.REJECT): _RE,
    (_AW, MrEvent.REJECT): _RE,
    (_TF, MrEvent.REJECT): _RE,
}

#: The event-log kind of each task event (the editor and the dispatcher listen for these).
TASK_EVENT_KINDS: dict[TaskEvent, str] = {
    TaskEvent.DISPATCH: "task.dispatched",
    TaskEvent.COMPLETE: "task.completed",
    TaskEvent.REQUEUE: "task.requeued",
    TaskEvent.WAIT_PROVIDER: "task.waiting_for_provider",
    TaskEvent.FAIL: "task.failed",
    TaskEvent.SEND_BACK: "task.requeued",
    TaskEvent.LAND: "task.merged",
    TaskEvent.CANCEL: "task.cancelled",
    TaskEvent.RETRY: "task.retried",
    TaskEvent.EXCEED_BUDGET: "task.budget_exceeded",
}


def next_task_status(task_id: str, current: TaskStatus, event: TaskEvent) -> TaskStatus:
    """The status ``event`` moves task ``task_id`` to from ``current``, or raise (and log)."""
    to = TASK_TRANSITIONS.get((current, event))
    if to is None:
        raise _illegal(f"task {task_id}", current.value, event.value, _task_sources(event))
    return to


def next_mr_status(mr_id: str, current: MergeStatus, event: MrEvent) -> MergeStatus:
    """The status ``event`` moves merge request ``mr_id`` to from ``current``, or raise."""
    to = MR_TRANSITIONS.get((current, event))
    if to is None:
        raise _illegal(f"merge request {mr_id}", current.value, event.value, _mr_sources(event))
    return to


def task_sources(event: TaskEvent) -> list[TaskStatus]:
    """The statuses from which ``event`` is legal (for messages and the CLI's checks)."""
    return [s for (s, e) in TASK_TRANSITIONS if e == event]


def _task_sources(event: TaskEvent) -> list[str]:
    return [s.value for s in task_sources(event)]


def _mr_sources(event: MrEvent) -> list[str]:
    return [s.value for (s, e) in MR_TRANSITIONS if e == event]


def _illegal(what: str, current: str, event: str, sources: list[str]) -> InvalidTransitionError:
    message = f"{what} is {current}; '{event}' needs it to be {' or '.join(sources)}"
    log.warning("illegal transition refused: %s", message)
    return InvalidTransitionError(message)


def transition_table_markdown() -> str:
    """Both tables as Markdown (docs/architecture.md holds this text; a test keeps them equal)."""
    lines = ["| task from | event | to |", "| --- | --- | --- |"]
    lines += [f"| {f.value} | {e.value} | {t.value} |" for (f, e), t in TASK_TRANSITIONS.items()]
    lines += ["", "| merge request from | event | to |", "| --- | --- | --- |"]
    lines += [f"| {f.value} | {e.value} | {t.value} |" for (f, e), t in MR_TRANSITIONS.items()]
    return "\n".join(lines)


def task_path(to: TaskStatus, start: TaskStatus = TaskStatus.OPEN) -> list[TaskEvent]:
    """The shortest legal sequence of events from ``start`` to ``to`` (for seeds and tests)."""
    paths: dict[TaskStatus, list[TaskEvent]] = {start: []}
    frontier = [start]
    while frontier:
        nxt = []
        for status in frontier:
            for (source, event), target in TASK_TRANSITIONS.items():
                if source == status and target not in paths:
                    paths[target] = [*paths[status], event]
                    nxt.append(target)
        frontier = nxt
    return paths[to]
