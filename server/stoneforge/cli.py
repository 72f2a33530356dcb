"""`sf`: the command line. Thin commands over :class:`stoneforge.service.Service`.

Run inside a git repository. ``--json`` prints machine-readable output on stdout; errors go to
stderr with a non-zero exit. Without ``--json`` a create command prints the new id alone.
"""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from stoneforge import render
from stoneforge.errors import StoneforgeError
from stoneforge.models import MergeStatus, TaskStatus, WireModel
from stoneforge.service import Service

app = typer.Typer(
    name="sf",
    help="Stoneforge: run many Claude Code agents on one repository, landed through a merge queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plan_app = typer.Typer(help="Plans: named groups of tasks.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks: units of work, one agent branch each.", no_args_is_help=True)
dep_app = typer.Typer(help="Dependencies between tasks.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(task_app, name="task")
merge_app = typer.Typer(
    help="The merge queue: merge requests of finished tasks.", no_args_is_help=True
)
app.add_typer(dep_app, name="dep")
app.add_typer(merge_app, name="merge")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _actor() -> str:
    return f"cli:{os.getpid()}"


def _open() -> Service:
    return Service.open(actor=_actor())


def _print_json(data: Any) -> None:
    if isinstance(data, WireModel):
        data = data.wire()
    elif isinstance(data, list):
        data = [item.wire() if isinstance(item, WireModel) else item for item in data]
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- init / status -------------------------------------------------------------------------------


@app.command()
def init(as_json: JsonFlag = False) -> None:
    """Set up stoneforge in this repository: config, state db, ignore rules."""
    service, created = Service.init(actor=_actor())
    with service:
        if as_json:
            _print_json({"repository": str(service.root), "created": created})
            return
        if created:
            for item in created:
                out.print(f"created {item}")
        else:
            out.print(f"already initialised: {service.root / '.stoneforge'}")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Counts of tasks, merge requests and agents, and whether an orchestrator runs."""
    with _open() as service:
        summary = service.status()
        if as_json:
            _print_json(summary)
        else:
            out.print(render.status_view(summary))


# -- plans ---------------------------------------------------------------------------------------


@plan_app.command("create")
def plan_create(
    title: Annotated[str, typer.Option("--title", help="The plan's name.")],
    goal: Annotated[
        str | None,
        typer.Option(
            "--goal",
            help="What the plan should achieve; a director agent reads the code and fills the "
            "plan with tasks.",
        ),
    ] = None,
    activate: Annotated[
        bool, typer.Option("--activate", help="Activate it at once: its tasks may dispatch.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a plan (a draft until activated); prints its id.

    With --goal the director plans it: prints the id, or with --json the plan and its tasks.
    """
    with _open() as service:
        if not goal or not goal.strip():
            plan = service.create_plan(title, goal, activate=activate)
            if as_json:
                _print_json(plan)
            else:
                out.print(plan.id)
            return
        err.print("The director is reading the code and planning the goal...", style="dim")
        plan = service.create_plan(title, goal, activate=activate)
        tasks = service.list_tasks(plan_id=plan.id)
        if as_json:
            _print_json({**plan.wire(), "tasks": [task.wire() for task in tasks]})
            return
        out.print(plan.id)
        follow = "" if activate else f"; `sf plan activate {plan.id}` lets them run"
        err.print(
            f"{plan.id} ({plan.status.value}): {len(tasks)} tasks; `sf plan show {plan.id}` "
            f"shows them{follow}",
            style="dim",
        )


@plan_app.command("list")
def plan_list(as_json: JsonFlag = False) -> None:
    """All plans."""
    with _open() as service:
        plans = service.list_plans()
        if as_json:
            _print_json(plans)
        else:
            out.print(render.plans_table(plans))


@plan_app.command("show")
def plan_show(
    plan_id: Annotated[str, typer.Argument(help="Plan id.")], as_json: JsonFlag = False
) -> None:
    """A plan and its tasks, as a dependency tree."""
    with _open() as service:
        plan = service.get_plan(plan_id)
        tasks = service.list_tasks(plan_id=plan_id)
        if as_json:
            _print_json({**plan.wire(), "tasks": [task.wire() for task in tasks]})
        else:
            out.print(render.plan_tree(plan, tasks))


@plan_app.command("activate")
def plan_activate(
    plan_id: Annotated[str, typer.Argument(help="Plan id.")], as_json: JsonFlag = False
) -> None:
    """Let the plan's tasks dispatch."""
    with _open() as service:
        plan = service.activate_plan(plan_id)
        if as_json:
            _print_json(plan)
        else:
            out.print(f"{plan.id} active")


# -- tasks ---------------------------------------------------------------------------------------


@task_app.command("create")
def task_create(
    title: Annotated[str, typer.Option("--title", help="What to do, in a line.")],
    plan: Annotated[
        str | None, typer.Option("--plan", help="Plan (id or exact title) to add it to.")
    ] = None,
    description: Annotated[
        str, typer.Option("--description", help="Details and acceptance criteria.")
    ] = "",
    priority: Annotated[
        int, typer.Option("--priority", min=1, max=5, help="1 (most urgent) to 5.")
    ] = 3,
    depends_on: Annotated[
        list[str] | None,
        typer.Option("--depends-on", help="Id of a task that must be merged first (repeatable)."),
    ] = None,
    branch: Annotated[
        str | None,
        typer.Option(
            "--branch", help="Continue this existing local or remote branch instead of a new one."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a task; prints its id."""
    with _open() as service:
        task = service.create_task(
            title,
            description=description,
            plan_id=plan,
            priority=priority,
            depends_on=depends_on or [],
            branch=branch,
        )
        if as_json:
            _print_json(task)
        else:
            out.print(task.id)


@task_app.command("list")
def task_list(
    plan: Annotated[str | None, typer.Option("--plan", help="Only this plan's tasks.")] = None,
    status_filter: Annotated[
        TaskStatus | None, typer.Option("--status", help="Only tasks with this status.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Tasks, oldest first."""
    with _open() as service:
        tasks = service.list_tasks(plan_id=plan, status=status_filter)
        if as_json:
            _print_json(tasks)
        else:
            out.print(render.tasks_table(tasks))


@task_app.command("show")
def task_show(
    task_id: Annotated[str, typer.Argument(help="Task id.")], as_json: JsonFlag = False
) -> None:
    """One task with its sessions, handoffs and merge request."""
    with _open() as service:
        task = service.get_task(task_id)
        if as_json:
            _print_json(task)
        else:
            out.print(render.task_detail(task))


@task_app.command("cancel")
def task_cancel(
    task_id: Annotated[str, typer.Argument(help="Task id.")], as_json: JsonFlag = False
) -> None:
    """Cancel a task (its branch is kept until you delete it)."""
    with _open() as service:
        task = service.cancel_task(task_id)
        if as_json:
            _print_json(task)
        else:
            out.print(f"{task.id} cancelled")


@task_app.command("retry")
def task_retry(
    task_id: Annotated[str, typer.Argument(help="Task id.")],
    budget: Annotated[
        float | None,
        typer.Option(
            "--budget",
            help="Set the task's own budget to this many USD in total (what it spent so far "
            "counts), instead of budgets.perTaskUsd.",
        ),
    ] = None,
    budget_tokens: Annotated[
        int | None,
        typer.Option(
            "--budget-tokens",
            help="Set the task's own token budget to this total, instead of budgets.perTaskTokens.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Put a failed, cancelled or budget_exceeded task back in the queue."""
    with _open() as service:
        task = service.retry_task(task_id, budget_usd=budget, budget_tokens=budget_tokens)
        if as_json:
            _print_json(task)
        else:
            out.print(f"{task.id} open")


# -- dependencies --------------------------------------------------------------------------------


@dep_app.command("add")
def dep_add(
    blocked: Annotated[str, typer.Argument(help="The task that must wait.")],
    blocker: Annotated[str, typer.Argument(help="The task it waits for.")],
    as_json: JsonFlag = False,
) -> None:
    """Make BLOCKED wait until BLOCKER is merged."""
    with _open() as service:
        task = service.add_dependency(blocked, blocker)
        if as_json:
            _print_json(task)
        else:
            out.print(f"{task.id} now depends on {', '.join(task.depends_on)}")


# -- merge queue ---------------------------------------------------------------------------------


@merge_app.command("list")
def merge_list(
    status_filter: Annotated[
        MergeStatus | None, typer.Option("--status", help="Only merge requests with this status.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Merge requests, oldest first, the candidates being checked now (with the base each is
    built on), and the checks that keep turning out flaky."""
    with _open() as service:
        mrs = service.list_merge_requests(status_filter)
        flaky = service.flaky_checks()
        checking = service.merge_checking()
        if as_json:
            _print_json(
                {
                    "mergeRequests": [mr.wire() for mr in mrs],
                    "flakyChecks": [f.wire() for f in flaky],
                    "checking": [c.wire() for c in checking],
                }
            )
        else:
            out.print(render.merge_requests_table(mrs))
            if checking:
                for line in render.checking_lines(checking, service.target_branch()):
                    out.print(line, markup=False)
            for line in render.flaky_checks_lines(flaky):
                out.print(line)


@merge_app.command("show")
def merge_show(
    mr_id: Annotated[str, typer.Argument(help="Merge request id.")], as_json: JsonFlag = False
) -> None:
    """One merge request: its state, checks, and the steward's reviews with their comments."""
    with _open() as service:
        mr = service.get_merge_request(mr_id)
        if as_json:
            _print_json(mr)
        else:
            out.print(render.merge_request_detail(mr))


@merge_app.command("approve")
def merge_approve(
    mr_id: Annotated[str, typer.Argument(help="Merge request id.")], as_json: JsonFlag = False
) -> None:
    """Land a merge request that waits for approval (or send it on to its checks)."""
    with _open() as service:
        mr = service.approve_merge(mr_id)
        if as_json:
            _print_json(mr)
        elif mr.status == MergeStatus.MERGED:
            out.print(f"{mr.id} merged at {mr.merged_commit}")
        else:
            out.print(f"{mr.id} approved: {mr.reason}")


@merge_app.command("reject")
def merge_reject(
    mr_id: Annotated[str, typer.Argument(help="Merge request id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; the worker reads it.")],
    as_json: JsonFlag = False,
) -> None:
    """Refuse a merge request; the task goes back to a worker with the reason."""
    with _open() as service:
        mr = service.reject_merge(mr_id, reason)
        if as_json:
            _print_json(mr)
        else:
            out.print(f"{mr.id} rejected; task {mr.task_id} is back in the queue")


# -- costs (issue 15) ----------------------------------------------------------------------------


@app.command()
def cost(as_json: JsonFlag = False) -> None:
    """What the agent sessions spent: in total, by task, plan, role and UTC day."""
    with _open() as service:
        report = service.cost_report()
        if as_json:
            _print_json(report)
        else:
            out.print(render.cost_report(report))


@app.command()
def forecast(as_json: JsonFlag = False) -> None:
    """Predicted conflicts among the active task branches and the target."""
    from stoneforge.git.forecast import format_forecast

    with _open() as service:
        result = service.forecast()
        if as_json:
            _print_json(result.to_json())
        else:
            out.print(format_forecast(result), markup=False)


# -- orchestration -------------------------------------------------------------------------------


class Backend(StrEnum):
    local = "local"
    ray = "ray"


@app.command()
def serve(
    max_concurrent: Annotated[
        int | None,
        typer.Option("--max-concurrent", min=1, max=64, help="Agent slots (default: config)."),
    ] = None,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle",
            help="Exit 0 once nothing is open, in progress or in review.",
        ),
    ] = False,
    backend: Annotated[
        Backend | None,
        typer.Option(
            "--backend",
            help="Where worker sessions run: this machine, or a Ray cluster's nodes "
            "(default: orchestrator.backend).",
        ),
    ] = None,
) -> None:
    """Run the orchestrator in the foreground with a live view; Ctrl-C stops it gracefully."""
    from stoneforge.serve import serve_foreground

    with _open() as service:
        serve_foreground(
            service,
            max_concurrent=max_concurrent,
            until_idle=until_idle,
            backend=backend.value if backend is not None else None,
        )


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Check what stoneforge needs: git >= 2.38, the Claude Code CLI, credentials, the repo."""
    from stoneforge.doctor import run_doctor

    results = run_doctor()
    if as_json:
        _print_json([r.model_dump() for r in results])
    else:
        for result in results:
            mark = Text("ok  ", style="green") if result.ok else Text("FAIL", style="bold red")
            out.print(Text.assemble(mark, " ", (result.name, "bold"), f"  {result.detail}"))
            if result.hint and not result.ok:
                out.print(Text(f"      fix: {result.hint}", style="yellow"))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def demo(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to create the demo project (default: a temp dir)."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo project afterwards.")] = False,
    through_lsp: Annotated[
        bool,
        typer.Option("--lsp", help="Drive it through the language server, as the editor does."),
    ] = False,
) -> None:
    """The whole product, offline: a throwaway project, five tasks, agents, the merge queue."""
    if through_lsp:
        from stoneforge.demo.lsp_run import run_demo_lsp

        result = run_demo_lsp(directory, keep=keep)
    else:
        from stoneforge.demo.run import run_demo

        result = run_demo(directory, keep=keep)
    if not result.ok:
        raise typer.Exit(1)


# -- editor ------------------------------------------------------------------------------------


@app.command()
def lsp(
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Speak LSP on stdin/stdout (default).")
    ] = True,
) -> None:
    """Run the language server for editors, on stdin/stdout (no port is opened)."""
    from stoneforge.lsp.server import main as serve_lsp

    serve_lsp()


# -- entry point ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run `sf`; returns the exit code (also used by tests that call it in-process)."""
    try:
        # Standalone mode lets typer report usage errors itself; ours arrive here.
        app(args=argv, prog_name="sf", standalone_mode=True)
    except StoneforgeError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        return 130
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
