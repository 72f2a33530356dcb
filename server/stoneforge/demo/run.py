"""`sf demo`: the whole product, offline, in about a minute.

A throwaway repository, a plan of five tasks, the real orchestrator running real Claude Code CLI
sessions in real worktrees, and the real merge queue with real checks. Only the model is a script
(a local endpoint that speaks the Messages API), so no AI is called and no key is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stoneforge.demo.fake_model import FakeModel
from stoneforge.demo.project import (
    DEMO_TASKS,
    GIT_IDENTITY,
    check_command,
    demo_config,
    make_project,
)
from stoneforge.demo.scripts import install
from stoneforge.git.slug import task_branch
from stoneforge.models import MergeStatus, SessionRole, Task, TaskStatus
from stoneforge.serve import serve_foreground
from stoneforge.service import Service

DEMO_KEY = "sk-ant-demo-not-a-real-key-000000"

BANNER = (
    "[bold]Stoneforge demo[/bold]: five tasks, real Claude Code sessions in real git worktrees, "
    "a real merge queue with real checks.\n"
    "[yellow]No AI is called in this demo.[/yellow] A scripted local endpoint plays the model, "
    "so it runs offline with no API key. Watch for a context handoff (multiply), a crashed "
    "session that is recovered (divide), a merge conflict resolved by the steward "
    "(french vs spanish), and the steward's read-only review of every merge request before "
    "its checks."
)


@dataclass
class DemoResult:
    root: Path
    tasks: list[Task]
    main_checks_pass: bool

    @property
    def ok(self) -> bool:
        return self.main_checks_pass and all(t.status == TaskStatus.MERGED for t in self.tasks)


def setup_demo(root: Path) -> tuple[Service, dict[str, str]]:
    """Make the project, initialise stoneforge in it and create the plan; key -> task id."""
    make_project(root)
    (root / ".stoneforge").mkdir(exist_ok=True)
    (root / ".stoneforge" / "config.yaml").write_text(demo_config())
    service, _ = Service.init(root, actor="demo")
    plan = service.create_plan(
        "Demo sprint",
        "Grow the calculator: two operations, a CLI, a greeting",
        director=False,  # the demo's tasks are its own
    )
    ids: dict[str, str] = {}
    for spec in DEMO_TASKS:
        task = service.create_task(
            spec.title,
            description=spec.description,
            plan_id=plan.id,
            priority=spec.priority,
            depends_on=[ids[key] for key in spec.depends_on],
        )
        ids[spec.key] = task.id
    service.activate_plan(plan.id)
    return service, ids


def run_demo(
    directory: Path | None = None, *, keep: bool = False, console: Console | None = None
) -> DemoResult:
    console = console or Console(highlight=False)
    console.print(Panel(BANNER, expand=False))
    base = directory.resolve() if directory else Path(tempfile.mkdtemp(prefix="stoneforge-demo-"))
    root = base / "calculator"
    if root.exists():
        raise SystemExit(f"{root} already exists; pass another --dir")
    try:
        service, ids = setup_demo(root)
        titles = {spec.key: spec.title for spec in DEMO_TASKS}
        branches = {key: task_branch(ids[key], titles[key]) for key in ids}
        console.print(f"project: {root}\n")
        with service, FakeModel() as model:
            install(model, ids, branches)
            agent_env = {**model.env(DEMO_KEY), **GIT_IDENTITY}
            serve_foreground(service, until_idle=True, agent_env=agent_env, console=console)
            result = summarize(service, console)
        return result
    finally:
        if keep:
            console.print(f"\nkept: {root}")
        else:
            shutil.rmtree(base, ignore_errors=True) if directory is None else shutil.rmtree(
                root, ignore_errors=True
            )


def summarize(service: Service, console: Console) -> DemoResult:
    tasks = service.list_tasks()
    table = Table(title="Tasks", title_justify="left", header_style="bold")
    for column in ("task", "status", "attempts", "sessions", "handoffs", "merge request", "checks"):
        table.add_column(column)
    for task in tasks:
        sessions = ", ".join(f"{s.role.value}:{s.status.value}" for s in task.sessions)
        mr = task.merge_request
        checks = ""
        if mr is not None:
            runs = [c for c in mr.checks]
            checks = ", ".join(
                ("pass" if c.exit_code == 0 else f"exit {c.exit_code}")
                + (" (flaky)" if c.flaky else "")
                for c in runs
            )
        table.add_row(
            f"{task.id} {task.title}",
            task.status.value,
            str(task.attempts),
            sessions,
            str(len(task.handoffs)),
            f"{mr.id} {mr.status.value}" if mr else "",
            checks,
        )
    console.print()
    console.print(table)
    for task in tasks:
        for handoff in task.handoffs:
            console.print(
                Text.assemble(
                    ("handoff ", "bold"),
                    f"{task.id}: done: {handoff.done}; next: {handoff.next_step}",
                )
            )
        reviews = task.merge_request.reviews if task.merge_request else []
        reviewers = {r.session_id for r in reviews}
        for review in reviews:
            console.print(
                Text.assemble(
                    ("review ", "bold"),
                    f"{task.id}: {review.verdict.value} by steward session {review.session_id}: "
                    f"{review.summary}",
                )
            )
        for session in task.sessions:
            if session.status.value == "crashed":
                console.print(
                    Text.assemble(("crash ", "bold"), f"{task.id} {session.id}: {session.error}")
                )
            if session.role == SessionRole.STEWARD and session.id not in reviewers:
                console.print(
                    Text.assemble(
                        ("conflict ", "bold"),
                        f"{task.id}: resolved by steward session {session.id} ({session.status.value})",
                    )
                )
    merged = [t for t in tasks if t.merge_request and t.merge_request.status == MergeStatus.MERGED]
    console.print(f"\n{len(merged)}/{len(tasks)} tasks merged")
    graph = subprocess.run(
        ["git", "log", "--graph", "--oneline", "--decorate", "main"],
        cwd=service.root,
        capture_output=True,
        text=True,
    ).stdout
    console.print(Panel(graph.rstrip(), title="git log --graph main", expand=False), markup=False)
    check = subprocess.run(
        ["bash", "-c", check_command()], cwd=service.root, capture_output=True, text=True
    )
    ok = check.returncode == 0
    console.print(
        Text(
            f"checks on the final main: {'pass' if ok else 'FAIL'} ({check_command()})",
            style="green" if ok else "bold red",
        )
    )
    return DemoResult(root=service.root, tasks=tasks, main_checks_pass=ok)
