"""Cost roll-ups on a large history: 1,000 tasks in 20 plans, 20,000 sessions over 30 days.

Prints each roll-up (`sf cost` runs all four, the dispatcher runs the plan and day ones at every
wake while those budgets are set) beside loading every session row into Python and summing there,
measured in the same run. Run: `.venv/bin/python bench/bench_costs.py`.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from stoneforge.config import BudgetsConfig
from stoneforge.orchestrator.budgets import dispatch_holds
from stoneforge.store import Store

TASKS, PLANS, SESSIONS, DAYS = 1_000, 20, 20_000, 30
ROLES = ["worker", "worker", "worker", "steward", "director"]


def populate(store: Store) -> None:
    """Fill the store quickly (setup only; the product writes through Store methods)."""
    plans = [store.create_plan(f"Plan {n}") for n in range(PLANS)]
    rng = random.Random(7)
    with sqlite3.connect(store.path) as conn:
        conn.executemany(
            "INSERT INTO tasks (seq, id, title, plan_id, priority, status, created_at, updated_at)"
            " VALUES (?,?,?,?,3,'merged','2026-11-01','2026-11-01')",
            [(n, f"t{n}", f"task {n}", plans[n % PLANS].id) for n in range(1, TASKS + 1)],
        )
        conn.executemany(
            "INSERT INTO sessions (seq, id, task_id, role, status, input_tokens, output_tokens, "
            "cost_usd, started_at) VALUES (?,?,?,?,'completed',?,?,?,?)",
            [
                (
                    n,
                    f"s{n}",
                    f"t{rng.randint(1, TASKS)}",
                    rng.choice(ROLES),
                    rng.randint(0, 2_000_000),
                    rng.randint(0, 20_000),
                    rng.random(),
                    f"2026-11-{rng.randint(1, DAYS):02d}T10:00:00.000+00:00",
                )
                for n in range(1, SESSIONS + 1)
            ],
        )


def median_ms(run: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def in_python(store: Store) -> dict[str, float]:
    """The naive way: every session row into Python, summed by task there."""
    sums: dict[str, float] = {}
    for session in store.list_sessions():
        key = session.task_id or ""
        sums[key] = sums.get(key, 0.0) + session.cost_usd
    return sums


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        populate(store)
        naive = median_ms(lambda: in_python(store), repeat=3)
        print(f"{SESSIONS:,} sessions, {TASKS:,} tasks, {PLANS} plans, {DAYS} days")
        print(f"  sum by task in Python (all rows loaded): {naive:8.1f} ms")
        for by in ("task", "plan", "role", "day"):
            ms = median_ms(lambda by=by: store.cost_by(by))  # type: ignore[misc]
            print(f"  cost_by({by!r:7}) in SQL:                 {ms:8.1f} ms  ({naive / ms:.0f}x)")
        day = median_ms(lambda: store.cost_totals(day=date(2026, 11, 15)))
        print(f"  one day's total (the day budget):        {day:8.1f} ms")
        task = median_ms(lambda: store.cost_totals(task_id="t500"))
        print(f"  one task's total (after every turn):     {task:8.1f} ms")
        budgets = BudgetsConfig(perDayUsd=100.0, perPlanUsd=1_000.0)
        holds = median_ms(lambda: dispatch_holds(store, budgets, date(2026, 11, 15)))
        print(f"  dispatch_holds (plan + day, per wake):   {holds:8.1f} ms")


if __name__ == "__main__":
    main()
