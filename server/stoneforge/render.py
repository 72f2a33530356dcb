"""Human-readable renderings (rich) of the models, for the CLI."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stoneforge.models import FlakyCheck, MergeRequest, Plan, StatusSummary, Task, TaskStatus

STATUS_STYLE = {
    TaskStatus.OPEN: "cyan",
    TaskStatus.IN_PROGRESS: "yellow",
    TaskStatus.REVIEW: "magenta",
    TaskStatus.MERGED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.CANCELLED: "dim",
}


def task_status_text(task: Task) -> Text:
    label = "blocked" if task.blocked else task.status.value
    style = "dim yellow" if task.blocked else STATUS_STYLE[task.status]
    return Text(label, style=style)


def tasks_table(tasks: list[Task]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("id", "status", "pri", "title", "plan", "depends on"):
        table.add_column(column)
    for task in tasks:
        priority = str(task.priority)
        if task.effective_priority != task.priority:
            priority += f"→{task.effective_priority}"
        table.add_row(
            task.id,
            task_status_text(task),
            priority,
            task.title,
            task.plan_id or "",
            ", ".join(task.depends_on),
        )
    return table


def task_detail(task: Task) -> Group:
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column()
    lines.add_row("task", f"{task.id}  {task.title}")
    lines.add_row("status", task_status_text(task))
    lines.add_row("priority", f"{task.priority} (effective {task.effective_priority})")
    if task.plan_id:
        lines.add_row("plan", task.plan_id)
    if task.depends_on:
        lines.add_row("depends on", ", ".join(task.depends_on))
    if task.branch:
        lines.add_row("branch", task.branch)
    if task.worktree:
        lines.add_row("worktree", task.worktree)
    lines.add_row("attempts", str(task.attempts))
    lines.add_row("created", task.created_at.isoformat(timespec="seconds"))
    if task.note:
        lines.add_row("note", task.note)
    if task.description:
        lines.add_row("description", task.description)
    parts: list[Table | Text] = [lines]
    if task.sessions:
        sessions = Table(title="sessions", show_edge=False, header_style="bold")
        for column in ("id", "role", "status", "context", "in", "out", "cost", "error"):
            sessions.add_column(column)
        for s in task.sessions:
            sessions.add_row(
                s.id,
                s.role.value,
                s.status.value,
                f"{s.context_tokens:,}",
                f"{s.input_tokens:,}",
                f"{s.output_tokens:,}",
                f"${s.cost_usd:.4f}",
                s.error or "",
            )
        parts.append(sessions)
    for handoff in task.handoffs:
        parts.append(
            Text.assemble(
                ("handoff ", "bold"),
                f"{handoff.created_at.isoformat(timespec='seconds')} ({handoff.source})\n",
                ("  done: ", "bold"),
                f"{handoff.done}\n",
                ("  remaining: ", "bold"),
                f"{handoff.remaining}\n",
                ("  next step: ", "bold"),
                handoff.next_step,
            )
        )
    for question in task.questions:
        asked = question.answered_at.isoformat(timespec="seconds")
        by = f" (director session {question.session_id})" if question.session_id else ""
        parts.append(
            Text.assemble(
                ("question ", "bold"),
                f"{asked}{by}\n",
                ("  Q: ", "bold"),
                f"{question.question}\n",
                ("  A: ", "bold"),
                question.answer,
            )
        )
    for refusal in task.refusals:
        at = refusal.at.isoformat(timespec="seconds")
        parts.append(
            Text.assemble(
                ("refused ", "bold yellow"),
                f"{at} {refusal.tool}: {refusal.tried}\n",
                ("  why: ", "bold"),
                refusal.reason,
            )
        )
    if task.merge_request:
        mr = task.merge_request
        parts.append(Text.assemble(("merge request ", "bold"), f"{mr.id} {mr.status.value}"))
    return Group(*parts)


def plan_tree(plan: Plan, tasks: list[Task]) -> Tree:
    """A plan as a dependency tree: tasks that wait on no task of the plan at the top, each
    other task under the first task of the plan it waits on. Every other dependency is named
    on the task's line ("after ..."), so the tree shows every edge."""
    tree = Tree(Text.assemble((plan.id, "bold"), f"  {plan.title}  ", (plan.status.value, "cyan")))
    if plan.goal:
        tree.add(Text(f"goal: {plan.goal}", style="italic"))
    if not tasks:
        tree.add(Text("no tasks yet", style="dim"))
        return tree
    by_id = {task.id: task for task in tasks}
    children: dict[str, list[Task]] = {}
    roots: list[Task] = []
    for task in tasks:
        parents = [dep for dep in task.depends_on if dep in by_id]
        if parents:
            children.setdefault(parents[0], []).append(task)
        else:
            roots.append(task)

    def label(task: Task, shown_under: str | None) -> Text:
        text = Text.assemble(
            (task.id, "bold"), "  ", task_status_text(task), f"  p{task.priority}  "
        )
        text.append(task.title)
        others = [dep for dep in task.depends_on if dep != shown_under]
        if others:
            word = "also after" if shown_under else "after"
            text.append(f"  ({word} {', '.join(others)})", style="dim")
        return text

    placed: set[str] = set()

    def add(node: Tree, task: Task, parent: str | None) -> None:
        placed.add(task.id)
        branch = node.add(label(task, parent))
        for child in children.get(task.id, []):
            if child.id not in placed:
                add(branch, child, task.id)

    for root in roots:
        add(tree, root, None)
    for task in tasks:  # only on a dependency cycle, which the store refuses
        if task.id not in placed:
            add(tree, task, None)
    return tree


def plans_table(plans: list[Plan]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("id", "status", "tasks", "title"):
        table.add_column(column)
    for plan in plans:
        table.add_row(plan.id, plan.status.value, str(len(plan.task_ids)), plan.title)
    return table


def merge_requests_table(mrs: list[MergeRequest]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("id", "task", "status", "branch", "candidate", "checks"):
        table.add_column(column)
    for mr in mrs:
        checks = ", ".join(f"{c.command}: {c.exit_code}" for c in mr.checks)
        table.add_row(
            mr.id, mr.task_id, mr.status.value, mr.branch, (mr.candidate_commit or "")[:10], checks
        )
    return table


def flaky_checks_lines(flaky: list[FlakyCheck]) -> list[Text]:
    """One line per check command that keeps failing once and passing its retry."""
    return [
        Text.assemble(
            ("flaky check: ", "bold yellow"),
            f"`{f.command}` failed, then passed its retry, {f.count} times"
            + (f" (last: {f.last_merge_request})" if f.last_merge_request else ""),
        )
        for f in flaky
    ]


def status_view(summary: StatusSummary) -> Table | Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("repository", summary.repository)
    tasks = ", ".join(f"{k} {v}" for k, v in summary.tasks_by_status.items() if v)
    table.add_row("tasks", tasks or "none")
    table.add_row("ready", str(summary.ready))
    table.add_row("blocked", str(summary.blocked))
    table.add_row("running sessions", str(summary.running_sessions))
    mrs = ", ".join(f"{k} {v}" for k, v in summary.merge_requests_by_status.items() if v)
    table.add_row("merge requests", mrs or "none")
    holder = summary.orchestrator
    table.add_row("orchestrator", f"running (pid {holder['pid']})" if holder else "not running")
    lines: list[Text] = []
    outage = summary.provider_unavailable
    if outage is not None:  # tasks wait in the queue; nothing to do but wait (or fix the key)
        lines.append(Text(f"{outage.line}\n  tasks wait in the queue", style="bold red"))
    pause = summary.landing_paused
    if pause is not None:
        hint = "commit, stash or move them" if pause.files else "make it clean"
        line = f"{pause.line}\n  {hint}, and landing resumes by itself"
        lines.append(Text(line, style="bold yellow"))
    return Group(table, *lines) if lines else table
