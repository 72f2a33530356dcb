"""The custom requests, as plain functions over the service facade.

Each entry of :data:`METHODS` pairs a params model with a function ``(context, params) -> JSON``.
The server registers every entry twice: as the request ``stoneforge/<name>`` and as the command
``stoneforge.<name>``. Nothing here knows about pygls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from stoneforge.errors import InvalidTransitionError
from stoneforge.lsp import params as p
from stoneforge.lsp.board import LeanBoard
from stoneforge.models import Task
from stoneforge.service import Service


class Orchestration(Protocol):
    """What the server offers to start and stop the in-process orchestrator."""

    def is_serving(self) -> bool: ...

    def max_concurrent(self) -> int: ...

    async def start(self, max_concurrent: int | None) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Context:
    service: Service
    orchestration: Orchestration | None = None
    #: The lean board kept current in memory (the server's); without it, read from the store.
    board: LeanBoard | None = None


Handler = Callable[[Context, Any], Any]


@dataclass(frozen=True)
class Method:
    params: type[p.Params]
    handler: Handler
    #: Runs on a worker thread (blocking git / SQLite work) unless it is a coroutine function.
    blocking: bool = True


def _tasks(tasks: list[Task]) -> list[dict[str, Any]]:
    return [task.wire() for task in tasks]


def create_task(ctx: Context, params: p.CreateTaskParams) -> dict[str, Any]:
    return ctx.service.create_task(
        params.title,
        description=params.description,
        plan_id=params.plan_id,
        priority=params.priority,
        depends_on=params.depends_on,
        branch=params.branch,
    ).wire()


def create_plan(ctx: Context, params: p.CreatePlanParams) -> dict[str, Any]:
    plan = ctx.service.create_plan(params.title, params.goal)
    if params.activate:
        plan = ctx.service.activate_plan(plan.id)
    return plan.wire()


def activate_plan(ctx: Context, params: p.PlanIdParams) -> dict[str, Any]:
    return ctx.service.activate_plan(params.plan_id).wire()


def cancel_task(ctx: Context, params: p.IdParams) -> dict[str, Any]:
    return ctx.service.cancel_task(params.id).wire()


def retry_task(ctx: Context, params: p.RetryTaskParams) -> dict[str, Any]:
    return ctx.service.retry_task(
        params.id, budget_usd=params.budget_usd, budget_tokens=params.budget_tokens
    ).wire()


def cost(ctx: Context, params: p.NoParams) -> dict[str, Any]:
    return ctx.service.cost_report().wire()


def list_tasks(ctx: Context, params: p.ListTasksParams) -> dict[str, Any]:
    return {"tasks": _tasks(ctx.service.list_tasks(plan_id=params.plan_id, status=params.status))}


def task_tree(ctx: Context, params: p.TaskTreeParams) -> dict[str, Any]:
    if params.full:
        return ctx.service.full_task_tree()
    return ctx.board.tree_json() if ctx.board is not None else ctx.service.task_tree()


def task(ctx: Context, params: p.IdParams) -> dict[str, Any]:
    return ctx.service.task_details(params.id)


def handoffs(ctx: Context, params: p.HandoffsParams) -> dict[str, Any]:
    if params.task_id is not None:
        ctx.service.get_task(params.task_id)  # unknown id -> error, not an empty list
    return {"handoffs": [h.wire() for h in ctx.service.list_handoffs(params.task_id)]}


def merge_requests(ctx: Context, params: p.MergeRequestsParams) -> dict[str, Any]:
    return {
        "mergeRequests": [mr.wire() for mr in ctx.service.list_merge_requests(params.status)],
        "flakyChecks": [f.wire() for f in ctx.service.flaky_checks()],
        "checking": [c.wire() for c in ctx.service.merge_checking()],
    }


def merge_diff(ctx: Context, params: p.IdParams) -> dict[str, Any]:
    return ctx.service.merge_diff(params.id)


def commit_diff(ctx: Context, params: p.CommitParams) -> dict[str, Any]:
    return ctx.service.commit_diff(params.commit)


def status(ctx: Context, params: p.NoParams) -> dict[str, Any]:
    summary = ctx.service.status().wire()
    serving = ctx.orchestration is not None and ctx.orchestration.is_serving()
    summary["serving"] = serving
    summary["maxConcurrent"] = (
        ctx.orchestration.max_concurrent()
        if serving and ctx.orchestration is not None
        else ctx.service.config.orchestrator.maxConcurrent
    )
    summary["agents"] = ctx.service.running_agents()
    # Marked running, but their process is gone: the editor must not show them as working.
    summary["interruptedSessions"] = ctx.service.interrupted_sessions()
    summary["handoffAtTokens"] = ctx.service.config.orchestrator.handoffAtTokens
    # The editor shows `sandbox.warning` loudly when agents run uncontained.
    summary["sandbox"] = ctx.service.sandbox_status().model_dump()
    return summary


def forecast(ctx: Context, params: p.NoParams) -> dict[str, Any]:
    return ctx.service.forecast_json()


def approve_merge(ctx: Context, params: p.IdParams) -> dict[str, Any]:
    return ctx.service.approve_merge(params.id).wire()


def reject_merge(ctx: Context, params: p.RejectMergeParams) -> dict[str, Any]:
    return ctx.service.reject_merge(params.id, params.reason).wire()


def _orchestration(ctx: Context) -> Orchestration:
    if ctx.orchestration is None:
        raise InvalidTransitionError("this server cannot run an orchestrator")
    return ctx.orchestration


async def serve(ctx: Context, params: p.ServeParams) -> dict[str, Any]:
    await _orchestration(ctx).start(params.max_concurrent)
    return {"serving": True}


async def stop(ctx: Context, params: p.NoParams) -> dict[str, Any]:
    await _orchestration(ctx).stop()
    return {"serving": False}


METHODS: dict[str, Method] = {
    "createTask": Method(p.CreateTaskParams, create_task),
    "createPlan": Method(p.CreatePlanParams, create_plan),
    "activatePlan": Method(p.PlanIdParams, activate_plan),
    "cancelTask": Method(p.IdParams, cancel_task),
    "retryTask": Method(p.RetryTaskParams, retry_task),
    "cost": Method(p.NoParams, cost),
    "listTasks": Method(p.ListTasksParams, list_tasks),
    "taskTree": Method(p.TaskTreeParams, task_tree),
    "task": Method(p.IdParams, task),
    "handoffs": Method(p.HandoffsParams, handoffs),
    "mergeRequests": Method(p.MergeRequestsParams, merge_requests),
    "mergeDiff": Method(p.IdParams, merge_diff),
    "commitDiff": Method(p.CommitParams, commit_diff),
    "status": Method(p.NoParams, status),
    "forecast": Method(p.NoParams, forecast),
    "approveMerge": Method(p.IdParams, approve_merge),
    "rejectMerge": Method(p.RejectMergeParams, reject_merge),
    "serve": Method(p.ServeParams, serve, blocking=False),
    "stop": Method(p.NoParams, stop, blocking=False),
}
