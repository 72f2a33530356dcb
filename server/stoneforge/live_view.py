"""The live view of `sf serve` (rich): one row per agent slot, the queue, recent events."""

from __future__ import annotations

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from stoneforge.models import utcnow
from stoneforge.orchestrator.view import OrchestratorView


def render_view(view: OrchestratorView) -> Group:
    table = Table(title="Stoneforge agents", title_justify="left", expand=True, header_style="bold")
    for column, ratio in (
        ("slot", None),
        ("task", 3),
        ("role", None),
        ("state", 1),
        ("context / handoff", 2),
        ("elapsed", None),
        ("cost", None),
    ):
        table.add_column(column, ratio=ratio, no_wrap=True)
    now = utcnow()
    for index in range(view.max_concurrent):
        if index < len(view.slots):
            slot = view.slots[index]
            used = min(slot.context_tokens, view.handoff_at_tokens)
            bar = Table.grid(padding=(0, 1))
            bar.add_row(
                ProgressBar(total=view.handoff_at_tokens, completed=used, width=14),
                f"{slot.context_tokens // 1000}k/{view.handoff_at_tokens // 1000}k",
            )
            elapsed = int((now - slot.started_at).total_seconds())
            table.add_row(
                str(index + 1),
                f"{slot.task_id} {slot.title}",
                slot.role,
                slot.state,
                bar,
                f"{elapsed // 60}:{elapsed % 60:02d}",
                f"${slot.cost_usd:.3f}",
            )
        else:
            table.add_row(str(index + 1), Text("idle", style="dim"), "", "", "", "", "")
    summary = Text.assemble(
        ("queue ", "bold"),
        f"{view.queued} ready",
        ("   merging ", "bold"),
        view.merging or "nothing",
        *((("   reviewing ", "bold"), view.reviewing) if view.reviewing else ()),
    )
    limit = view.concurrency_limit
    if limit is not None and limit < view.max_concurrent:
        summary.append(f"   at most {limit} of {view.max_concurrent} sessions (rate limited)")
    recent = Text("\n".join(view.recent[-8:]) or "no events yet", style="dim")
    parts = [table, summary]
    if view.provider_unavailable:  # no session starts; tasks wait in the queue
        parts.append(Text(view.provider_unavailable, style="bold red"))
    if view.landing_paused:  # waits for the user: shown until their checkout is clean
        parts.append(Text(view.landing_paused, style="bold yellow"))
    for hold in view.budget_holds:  # a plan or day budget: no new dispatch (issue 15)
        parts.append(Text(f"dispatch held: {hold}", style="bold yellow"))
    return Group(*parts, Text("recent events", style="bold"), recent)
