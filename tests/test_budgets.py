"""Cost roll-ups and budget decisions on a real SQLite store (no agents).

The roll-ups are SQL sums over the sessions table; here they are compared with the sessions
themselves, summed in Python, for any mix of tasks, plans, roles and days (hypothesis). Then the
budget decisions: a task's own budget over the configured one, the plan and day budgets that hold
dispatch back, the retry that sets a budget (and refuses one already spent), and the per-turn
pricing that lets a budget act before the CLI reports its total.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import git
from stoneforge.agents.accounting import TokenAccountant
from stoneforge.agents.events import AssistantTurn, Result, SessionStarted, TokenUsage
from stoneforge.agents.pricing import turn_cost
from stoneforge.config import BudgetsConfig, StoneforgeConfig
from stoneforge.errors import InvalidInputError, InvalidTransitionError
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import CostTotals, SessionRole, TaskStatus
from stoneforge.orchestrator.budgets import (
    dispatch_holds,
    held_task,
    task_over_budget,
    utc_today,
)
from stoneforge.service import Service
from stoneforge.store import Store

TODAY = date(2026, 12, 2)

# One recorded session: (task index or None, role, day offset, input, output, cost in cents)
SESSION = st.tuples(
    st.one_of(st.none(), st.integers(0, 4)),
    st.sampled_from(list(SessionRole)),
    st.integers(-2, 0),
    st.integers(0, 2_000_000),
    st.integers(0, 200_000),
    st.integers(0, 5_000),
)


def record(
    store: Store,
    task_id: str | None,
    role: SessionRole,
    *,
    input_tokens: int,
    output_tokens: int,
    cost_usd: float,
    day: date = TODAY,
) -> str:
    """A session as a worker run leaves it: started, its tokens and cost recorded, on ``day``."""
    session = store.start_session(task_id, role)
    store.update_session(
        session.id, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd
    )
    with sqlite3.connect(store.path) as db:  # the store stamps "now": move it to its day
        db.execute(
            "UPDATE sessions SET started_at = ? WHERE id = ?",
            (f"{day.isoformat()}T10:00:00.000+00:00", session.id),
        )
    return session.id


def python_sums(store: Store, key) -> dict:
    """The same roll-up, from the sessions one by one."""
    sums: dict = defaultdict(lambda: [0, 0, 0, 0.0])
    for session in store.list_sessions():
        row = sums[key(session)]
        row[0] += 1
        row[1] += session.input_tokens
        row[2] += session.output_tokens
        row[3] += session.cost_usd
    return dict(sums)


def as_tuple(totals: CostTotals) -> tuple:
    return (totals.sessions, totals.input_tokens, totals.output_tokens, totals.cost_usd)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sessions=st.lists(SESSION, max_size=12), planning=st.booleans())
def test_roll_ups_equal_the_sum_of_the_sessions(sessions: list[tuple], planning: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        plans = [store.create_plan("Alpha"), store.create_plan("Beta")]
        tasks = [
            store.create_task(f"T{n}", plan_id=plans[n % 2].id if n < 4 else None) for n in range(5)
        ]
        plan_of = {t.id: t.plan_id for t in tasks}
        director_plan: dict[str, str] = {}
        if planning:  # a director's planning session: no task, its plan named by an event
            sid = record(
                store, None, SessionRole.DIRECTOR, input_tokens=7, output_tokens=3, cost_usd=0.25
            )
            store.set_director_session(
                plans[1].id, session_id=sid, provider_session_id="p", config_dir="c", cwd="w"
            )
            director_plan[sid] = plans[1].id
        for task_n, role, offset, tokens_in, tokens_out, cents in sessions:
            record(
                store,
                tasks[task_n].id if task_n is not None else None,
                role,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost_usd=cents / 100,
                day=TODAY + timedelta(days=offset),
            )

        def close(sql: CostTotals, py: list) -> None:
            assert as_tuple(sql)[:3] == tuple(py[:3])
            assert sql.cost_usd == pytest.approx(py[3])
            assert sql.tokens == py[1] + py[2]

        keys = {
            "task": lambda s: s.task_id,
            "plan": lambda s: plan_of.get(s.task_id) or director_plan.get(s.id),
            "role": lambda s: s.role.value,
            "day": lambda s: s.started_at.date().isoformat(),
        }
        total = store.cost_totals()
        close(
            total,
            [
                len(sessions) + planning,
                sum(s.input_tokens for s in store.list_sessions()),
                sum(s.output_tokens for s in store.list_sessions()),
                sum(s.cost_usd for s in store.list_sessions()),
            ],
        )
        for by, key in keys.items():
            expected = python_sums(store, key)
            rows = store.cost_by(by)
            assert {row.key for row in rows} == set(expected), by
            for row in rows:
                close(row, expected[row.key])
            # each way of rolling up sums to the total
            assert sum(r.sessions for r in rows) == total.sessions
            assert sum(r.cost_usd for r in rows) == pytest.approx(total.cost_usd)
        # the same numbers on the tasks and plans themselves, and by a filter
        for task in store.list_tasks():
            close(task.cost, python_sums(store, keys["task"]).get(task.id, [0, 0, 0, 0.0]))
            assert task.cost == store.get_task(task.id).cost == store.cost_totals(task_id=task.id)
        for plan in store.list_plans():
            close(plan.cost, python_sums(store, keys["plan"]).get(plan.id, [0, 0, 0, 0.0]))
            assert store.get_plan(plan.id).cost == plan.cost
        close(
            store.cost_totals(day=TODAY),
            python_sums(store, keys["day"]).get(TODAY.isoformat(), [0, 0, 0, 0.0]),
        )


def test_a_task_budget_of_its_own_replaces_the_configured_one(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        task = store.create_task("Spends")
        record(
            store, task.id, SessionRole.WORKER, input_tokens=900, output_tokens=100, cost_usd=0.40
        )
        record(store, task.id, SessionRole.DIRECTOR, input_tokens=0, output_tokens=0, cost_usd=0.10)
        budgets = BudgetsConfig(perTaskUsd=0.50)
        task = store.get_task(task.id)
        why = task_over_budget(store, task, budgets)
        assert why == f"task {task.id} spent $0.50 of $0.50 (budgets.perTaskUsd)"
        assert task_over_budget(store, task, BudgetsConfig(perTaskUsd=0.51)) is None
        assert task_over_budget(store, task, BudgetsConfig()) is None  # no budget: no limit
        tokens = task_over_budget(store, task, BudgetsConfig(perTaskTokens=1_000))
        assert tokens == f"task {task.id} spent 1,000 of 1,000 tokens (budgets.perTaskTokens)"
        own = task.model_copy(update={"budget_usd": 2.0})
        assert task_over_budget(store, own, budgets) is None


def test_plan_and_day_budgets_hold_dispatch_back(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        alpha, beta = store.create_plan("Alpha"), store.create_plan("Beta")
        a = store.create_task("A", plan_id=alpha.id)
        b = store.create_task("B", plan_id=beta.id)
        record(store, a.id, SessionRole.WORKER, input_tokens=10, output_tokens=1, cost_usd=1.5)
        record(
            store,
            b.id,
            SessionRole.WORKER,
            input_tokens=10,
            output_tokens=1,
            cost_usd=0.2,
            day=TODAY - timedelta(days=1),
        )
        assert dispatch_holds(store, BudgetsConfig(), TODAY) == []
        [plan_hold] = dispatch_holds(store, BudgetsConfig(perPlanUsd=1.0), TODAY)
        assert plan_hold.scope == "plan" and plan_hold.plan_id == alpha.id
        assert plan_hold.reason.startswith(f"plan {alpha.id} (Alpha) budget reached: $1.50 of")
        assert held_task([plan_hold], alpha.id) is plan_hold
        assert held_task([plan_hold], beta.id) is None and held_task([plan_hold], None) is None
        # Today's sessions only: $1.50 today, $0.20 yesterday.
        assert dispatch_holds(store, BudgetsConfig(perDayUsd=1.6), TODAY) == []
        [day_hold] = dispatch_holds(store, BudgetsConfig(perDayUsd=1.5), TODAY)
        assert day_hold.scope == "day" and "$1.50 of $1.50 (budgets.perDayUsd)" in day_hold.reason
        assert "2026-12-02 (UTC)" in day_hold.reason
        assert held_task([day_hold], beta.id) is day_hold and held_task([day_hold], None)
        yesterday = dispatch_holds(store, BudgetsConfig(perDayTokens=11), TODAY - timedelta(1))
        assert [h.scope for h in yesterday] == ["day"]


def _service(tmp_path: Path, budgets: dict) -> Service:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    config = StoneforgeConfig.model_validate({"budgets": budgets})
    return Service(root, config, Store(tmp_path / "s.db"))


def test_retry_sets_the_tasks_own_budget_and_refuses_one_already_spent(tmp_path: Path) -> None:
    with _service(tmp_path, {"perTaskUsd": 0.5}) as service:
        store = service.store
        task = store.create_task("Costly")
        store.dispatch_task(task.id)
        record(store, task.id, SessionRole.WORKER, input_tokens=5, output_tokens=5, cost_usd=0.6)
        store.transition_task(task.id, TaskEvent.EXCEED_BUDGET, attempt=1, note="budget")
        assert store.get_task(task.id).status == TaskStatus.BUDGET_EXCEEDED
        with pytest.raises(InvalidInputError, match=r"spent \$0.60 of \$0.50 .*--budget USD"):
            service.retry_task(task.id)
        with pytest.raises(InvalidInputError, match=r"spent \$0.60 of \$0.55 \(task t1's own"):
            service.retry_task(task.id, budget_usd=0.55)
        assert store.get_task(task.id).status == TaskStatus.BUDGET_EXCEEDED  # nothing changed
        after = service.retry_task(task.id, budget_usd=5)
        assert after.status == TaskStatus.OPEN and after.budget_usd == 5.0
        assert after.note and "now $5.00, $0.60 spent so far" in after.note
        # A wrong state is named before any budget.
        with pytest.raises(InvalidTransitionError, match="is open; 'retry' needs"):
            service.retry_task(task.id, budget_usd=0.1)


def test_each_turn_is_priced_and_the_clis_total_wins_at_the_end() -> None:
    usage = TokenUsage(input_tokens=10_000, output_tokens=100, cache_read_input_tokens=20_000)
    # Sonnet 4: $3 / $15 / $0.30 per million input / output / cache-read tokens.
    assert turn_cost("claude-sonnet-4-20250514", usage) == pytest.approx(0.0375)
    assert turn_cost("some-other-model", usage) is None
    accountant = TokenAccountant()
    accountant.observe(SessionStarted(provider_session_id="p", model="claude-sonnet-4-20250514"))
    accountant.observe(AssistantTurn(message_id="1", usage=usage))
    accountant.observe(AssistantTurn(message_id="2", usage=usage))
    assert accountant.stats.cost_usd == pytest.approx(0.075)
    accountant.observe(
        Result(provider_session_id="p", is_error=False, subtype="success", total_cost_usd=0.08)
    )
    assert accountant.stats.cost_usd == 0.08
    unknown = TokenAccountant("some-other-model")
    unknown.observe(AssistantTurn(message_id="1", usage=usage))
    assert unknown.stats.cost_usd is None  # no guess: known when the CLI reports it


def test_the_editor_payloads_carry_costs_holds_and_the_budget_stop(tmp_path: Path) -> None:
    from stoneforge.lsp.changes import user_messages

    with _service(tmp_path, {"perDayUsd": 0.5}) as service:
        store = service.store
        plan = store.create_plan("Alpha")
        task = store.create_task("Costly", plan_id=plan.id)
        record(
            store,
            task.id,
            SessionRole.WORKER,
            input_tokens=5,
            output_tokens=5,
            cost_usd=0.6,
            day=utc_today(),
        )
        # `stoneforge/taskTree`: the lean row carries what the task spent ...
        [lean_plan] = service.task_tree()["plans"]
        assert lean_plan["tasks"][0]["costUsd"] == 0.6
        # ... its details (`stoneforge/task`, or `taskTree {"full": true}`) the whole CostTotals.
        assert service.task_details(task.id)["cost"]["tokens"] == 10
        tree = service.full_task_tree()
        [wired_plan] = tree["plans"]
        assert wired_plan["cost"]["costUsd"] == 0.6 and wired_plan["cost"]["tokens"] == 10
        assert wired_plan["tasks"][0]["cost"] == {
            "sessions": 1,
            "inputTokens": 5,
            "outputTokens": 5,
            "tokens": 10,
            "costUsd": 0.6,
        }
        assert wired_plan["tasks"][0]["budgetUsd"] is None
        status = service.status().wire()  # `stoneforge/status` adds to this
        assert status["costToday"]["costUsd"] == 0.6
        [hold] = status["budgetHolds"]
        assert hold["scope"] == "day" and hold["reason"].startswith("day budget reached: $0.60")
        store.dispatch_task(task.id)
        store.transition_task(task.id, TaskEvent.EXCEED_BUDGET, note="Budget reached: $0.60")
        [changed] = [e for e in store.events_since(0) if e.kind == "task.budget_exceeded"]
        [(_, text)] = user_messages([changed])
        assert text == f"Stoneforge: task {task.id} stopped. Budget reached: $0.60"
