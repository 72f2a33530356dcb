"""Budget decisions: does a task's, a plan's or today's spending allow more work?

Spending is what the store's roll-ups say (:mod:`stoneforge.store.costs`): the sum over the
sessions' recorded tokens and cost, which a running session keeps current turn by turn. A limit
counts as reached at equality: the next turn would pass it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from stoneforge.config import BudgetsConfig
from stoneforge.models import BudgetHold, CostTotals, Task
from stoneforge.store import Store


@dataclass(frozen=True)
class Limit:
    """A USD and a token limit (None: none), and the config keys (or the task) they come from."""

    usd: float | None
    tokens: int | None
    usd_source: str = ""
    tokens_source: str = ""

    @property
    def unlimited(self) -> bool:
        return self.usd is None and self.tokens is None

    def reached(self, spent: CostTotals) -> str | None:
        """How spending reached this limit ("$0.52 of $0.50 (budgets.perTaskUsd)"), or None."""
        parts = []
        if self.usd is not None and spent.cost_usd >= self.usd:
            parts.append(f"${spent.cost_usd:.2f} of ${self.usd:.2f} ({self.usd_source})")
        if self.tokens is not None and spent.tokens >= self.tokens:
            parts.append(f"{spent.tokens:,} of {self.tokens:,} tokens ({self.tokens_source})")
        return " and ".join(parts) or None


def task_limit(task: Task, budgets: BudgetsConfig) -> Limit:
    """The task's own budget where it has one (`sf task retry --budget`), else the config's."""
    own = f"task {task.id}'s own budget"
    return Limit(
        usd=task.budget_usd if task.budget_usd is not None else budgets.perTaskUsd,
        tokens=task.budget_tokens if task.budget_tokens is not None else budgets.perTaskTokens,
        usd_source=own if task.budget_usd is not None else "budgets.perTaskUsd",
        tokens_source=own if task.budget_tokens is not None else "budgets.perTaskTokens",
    )


def task_over_budget(store: Store, task: Task, budgets: BudgetsConfig) -> str | None:
    """Why ``task`` may not spend more ("spent $0.52 of $0.50 (...)"), or None."""
    limit = task_limit(task, budgets)
    if limit.unlimited:
        return None
    reached = limit.reached(store.cost_totals(task_id=task.id))
    return None if reached is None else f"task {task.id} spent {reached}"


def utc_today() -> date:
    return datetime.now(UTC).date()


def seconds_to_next_day(now: datetime | None = None) -> float:
    """Seconds until 00:00 UTC, when a day budget starts over."""
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - now).total_seconds()


def dispatch_holds(
    store: Store, budgets: BudgetsConfig, today: date | None = None
) -> list[BudgetHold]:
    """The plan and day budgets that stop new dispatch now (running sessions go on)."""
    holds: list[BudgetHold] = []
    day = Limit(
        budgets.perDayUsd, budgets.perDayTokens, "budgets.perDayUsd", "budgets.perDayTokens"
    )
    if not day.unlimited:
        today = today or utc_today()
        reached = day.reached(store.cost_totals(day=today))
        if reached is not None:
            holds.append(
                BudgetHold(
                    scope="day",
                    reason=f"day budget reached: {reached} spent on {today.isoformat()} (UTC); "
                    "nothing is dispatched until 00:00 UTC or until the budget is raised",
                )
            )
    plan = Limit(
        budgets.perPlanUsd, budgets.perPlanTokens, "budgets.perPlanUsd", "budgets.perPlanTokens"
    )
    if not plan.unlimited:
        for row in store.cost_by("plan"):
            reached = plan.reached(row) if row.key is not None else None
            if reached is not None:
                holds.append(
                    BudgetHold(
                        scope="plan",
                        plan_id=row.key,
                        reason=f"plan {row.key} ({row.title}) budget reached: {reached}; its "
                        "tasks are not dispatched until the budget is raised",
                    )
                )
    return holds


def held_task(holds: list[BudgetHold], plan_id: str | None) -> BudgetHold | None:
    """The hold that keeps a task of ``plan_id`` from being dispatched, if any."""
    for hold in holds:
        if hold.scope == "day" or (hold.scope == "plan" and hold.plan_id == plan_id):
            return hold
    return None
