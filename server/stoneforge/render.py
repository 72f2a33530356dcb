"""Human-readable renderings (rich) of the models, for the CLI."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from stoneforge.models import (
    CheckingCandidate,
    CostReport,
    CostRow,
    CostTotals,
    FlakyCheck,
    MergeRequest,
    Plan,
    StatusSummary,
    Task,
    TaskStatus,
)

STATUS_STYLE = {
    TaskStatus.OPEN: "cyan",
    TaskStatus.IN_PROGRESS: "yellow",
    TaskStatus.REVIEW: "magenta",
    TaskStatus.MERGED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.CANCELLED: "dim",
    TaskStatus.BUDGET_EXCEEDED: "bold red",
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
    if task.stacked_on:
        lines.add_row(
            "stacked on", ", ".join(task.stacked_on) + f" (at {(task.stack_base or '')[:10]})"
        )
    if task.worktree:
        lines.add_row("worktree", task.worktree)
    lines.add_row("attempts", str(task.attempts))
    lines.add_row("cost", spent(task.cost) + task_budget_text(task))
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
        for review in mr.reviews:
            parts.append(Text(f"  review {review.round}: {review.verdict.value}", style="dim"))
    return Group(*parts)


def plan_tree(plan: Plan, tasks: list[Task]) -> Tree:
    """A plan as a dependency tree: tasks that wait on no task of the plan at the top, each
    other task under the first task of the plan it waits on. Every other dependency is named
    on the task's line ("after ..."), so the tree shows every edge."""
    tree = Tree(
        Text.assemble(
            (plan.id, "bold"),
            f"  {plan.title}  ",
            (plan.status.value, "cyan"),
            (f"  {spent(plan.cost)}", "dim"),
        )
    )
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
        if task.cost.sessions:
            text.append(f"  ${task.cost.cost_usd:.2f}", style="dim")
        others = [dep for dep in task.depends_on if dep != shown_under]
        if others:
            word = "also after" if shown_under else "after"
            text.append(f"  ({word} {', '.join(others)})", style="dim")
        if task.stacked_on:
            text.append(f"  stacked on {', '.join(task.stacked_on)}", style="dim cyan")
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
        branch = mr.branch + (f" (stacked on {', '.join(mr.stacked_on)})" if mr.stacked_on else "")
        table.add_row(
            mr.id, mr.task_id, mr.status.value, branch, (mr.candidate_commit or "")[:10], checks
        )
    return table


def merge_request_detail(mr: MergeRequest) -> Group:
    """One merge request: its state, checks and every review with its verdict and comments."""
    parts: list[Text] = [
        Text.assemble((mr.id, "bold"), f"  {mr.status.value}  task {mr.task_id}  {mr.branch}"),
    ]
    if mr.reason:
        parts.append(Text.assemble(("reason: ", "bold"), mr.reason))
    if mr.head_commit:
        parts.append(Text.assemble(("head: ", "bold"), mr.head_commit))
    if mr.stacked_on:  # its summary and diff are its own changes, from this base
        parts.append(
            Text.assemble(
                ("stacked on: ", "bold"), f"{', '.join(mr.stacked_on)} (at {mr.base_commit})"
            )
        )
    if mr.candidate_commit:
        parts.append(Text.assemble(("candidate: ", "bold"), mr.candidate_commit))
    if mr.merged_commit:
        parts.append(Text.assemble(("merged: ", "bold"), mr.merged_commit))
    for check in mr.checks:
        code = "timed out" if check.exit_code is None else f"exit {check.exit_code}"
        parts.append(Text.assemble(("check ", "bold"), f"`{check.command}`: {code}"))
    if not mr.reviews:
        parts.append(Text("no reviews", style="dim"))
    for review in mr.reviews:
        approved = review.verdict.value == "approve"
        verdict = "approved" if approved else "changes requested"
        by = f", session {review.session_id}" if review.session_id else ""
        at = f" at {review.head_commit[:10]}" if review.head_commit else ""
        parts.append(
            Text.assemble(
                (f"review {review.round} ", "bold"),
                (verdict, "green" if approved else "yellow"),
                f" ({review.id}{at}{by})\n  {review.summary}",
            )
        )
        for comment in review.comments:
            where = comment.path + (f":{comment.line}" if comment.line else "")
            parts.append(Text.assemble("  - ", (where, "cyan"), f": {comment.body}"))
    if mr.summary:
        parts.append(Text.assemble(("summary:\n", "bold"), mr.summary))
    return Group(*parts)


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


def checking_lines(checking: list[CheckingCandidate], target: str) -> list[str]:
    """The candidates checked now, one line each: what they check and what they are built on
    (with look-ahead, a candidate may be built on the one checked before it)."""
    if not checking:
        return []
    return [
        f"checking now ({len(checking)} at once):" if len(checking) > 1 else "checking now:"
    ] + [f"  {c.line(target)}" for c in checking]


def status_view(summary: StatusSummary) -> Table | Group:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("repository", summary.repository)
    tasks = ", ".join(f"{k} {v}" for k, v in summary.tasks_by_status.items() if v)
    table.add_row("tasks", tasks or "none")
    table.add_row("ready", str(summary.ready))
    table.add_row("blocked", str(summary.blocked))
    for task_id, blockers in summary.stacked.items():
        table.add_row("stacked", f"{task_id} stacked on {', '.join(blockers)}")
    table.add_row("running sessions", str(summary.running_sessions))
    mrs = ", ".join(f"{k} {v}" for k, v in summary.merge_requests_by_status.items() if v)
    table.add_row("merge requests", mrs or "none")
    for candidate in summary.checking:
        table.add_row("checking", candidate.line("the target"))
    holder = summary.orchestrator
    table.add_row("orchestrator", f"running (pid {holder['pid']})" if holder else "not running")
    table.add_row("spent today", spent(summary.cost_today) + " (UTC day)")
    table.add_row("spent in all", spent(summary.cost_total))
    for node in summary.nodes or []:
        checks = f", {node.check_slots} check slots" if node.check_slots else ""
        running = f" ({', '.join(node.sessions)})" if node.sessions else ""
        table.add_row(
            "node",
            f"{node.address} ({node.node_id[:12]}): {node.busy}/{node.agent_slots} agent slots "
            f"busy{running}{checks}",
        )
    lines: list[Text] = []
    outage = summary.provider_unavailable
    if outage is not None:  # tasks wait in the queue; nothing to do but wait (or fix the key)
        lines.append(Text(f"{outage.line}\n  tasks wait in the queue", style="bold red"))
    for question in summary.open_questions:  # the worker went on with its own assumption
        lines.append(
            Text(
                f"question of {question.task_id} the director could not answer: "
                f"{(question.question.strip().splitlines() or [''])[0][:100]} ({question.error})",
                style="yellow",
            )
        )
    for hold in summary.budget_holds:
        lines.append(Text(f"dispatch held: {hold.reason}", style="bold yellow"))
    pause = summary.landing_paused
    if pause is not None:
        hint = "commit, stash or move them" if pause.files else "make it clean"
        line = f"{pause.line}\n  {hint}, and landing resumes by itself"
        lines.append(Text(line, style="bold yellow"))
    return Group(table, *lines) if lines else table


# -- costs (issue 15) ----------------------------------------------------------------------------


def spent(totals: CostTotals) -> str:
    """ "$0.42, 12,345 tokens, 3 sessions"."""
    sessions = "1 session" if totals.sessions == 1 else f"{totals.sessions} sessions"
    return f"${totals.cost_usd:.2f}, {totals.tokens:,} tokens, {sessions}"


def task_budget_text(task: Task) -> str:
    own = [f"${task.budget_usd:.2f}"] if task.budget_usd is not None else []
    own += [f"{task.budget_tokens:,} tokens"] if task.budget_tokens is not None else []
    return f" (its own budget: {' and '.join(own)})" if own else ""


def _cost_table(name: str, rows: list[CostRow], none_label: str) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in (name, "cost", "tokens", "in", "out", "sessions"):
        table.add_column(column, justify="left" if column == name else "right")
    for row in rows:
        name = row.key or none_label
        if row.title:
            name += f"  {row.title}"
        table.add_row(
            name,
            f"${row.cost_usd:.4f}",
            f"{row.tokens:,}",
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            str(row.sessions),
        )
    return table


def cost_report(report: CostReport) -> Group:
    total = Text.assemble(("total ", "bold"), spent(report.total))
    if not report.total.sessions:
        return Group(total)
    return Group(
        total,
        _cost_table("day (UTC)", report.by_day, "-"),
        _cost_table("role", report.by_role, "-"),
        _cost_table("plan", report.by_plan, "(no plan)"),
        _cost_table("task", report.by_task, "(no task)"),
    )
