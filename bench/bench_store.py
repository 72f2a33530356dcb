"""Store and graph speed on a large board: 10,000 tasks and 30,000 dependencies.

Prints our `ready()` and `task list --json` beside a plain SELECT of the same rows, measured in
the same run; `task list --json` the naive way too (a model per task, `Task.wire()`, Python's
indented `json.dumps`) beside ours (`Store.task_list_json`: the text of a task that carries
nothing but its row written column by column into pieces of text from Python's encoder, with the
graph's facts each row keeps; no model or dict per task). Both produce the CLI's exact output; the
run checks that they are equal.
Run: `.venv/bin/python bench/bench_store.py`.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stoneforge.models import utcnow
from stoneforge.store import Store

TASKS = 10_000
DEPS = 30_000
ROUNDS = 9


def populate(db: Path) -> None:
    """Fill the store quickly (setup only; the product writes through Store methods)."""
    Store(db).close()
    rng = random.Random(7)
    now = utcnow().isoformat(timespec="milliseconds")
    statuses = ["open"] * 6 + ["merged"] * 3 + ["in_progress"]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO tasks (seq, id, title, description, priority, status, created_at, "
            "updated_at) VALUES (?,?,?,?,?,?,?,?)",
            [
                (i, f"t{i}", f"task {i}", "", rng.randint(1, 5), rng.choice(statuses), now, now)
                for i in range(1, TASKS + 1)
            ],
        )
        edges: set[tuple[int, int]] = set()
        while len(edges) < DEPS:
            a, b = rng.randint(2, TASKS), rng.randint(1, TASKS)
            if b < a:  # edges point to older tasks: acyclic
                edges.add((a, b))
        conn.executemany(
            "INSERT INTO deps (task_id, depends_on) VALUES (?, ?)",
            [(f"t{a}", f"t{b}") for a, b in edges],
        )
    with Store(db) as store:  # the graph's facts each row keeps, for the rows written here
        store.refresh_graph_facts()


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        populate(db)
        store = Store(db)
        raw = sqlite3.connect(db)

        def plain_select() -> list[tuple]:
            return raw.execute("SELECT * FROM tasks ORDER BY seq").fetchall()

        def plain_select_with_deps() -> tuple[list[tuple], list[tuple]]:
            return plain_select(), raw.execute("SELECT * FROM deps").fetchall()

        def list_json_naive() -> str:
            return json.dumps(
                [task.wire() for task in store.list_tasks()], indent=2, ensure_ascii=False
            )

        def list_json() -> str:  # what `sf task list --json` does once the store is open
            return store.task_list_json()

        if list_json() != list_json_naive():
            raise SystemExit("task list --json: ours and the naive way differ")

        # Interleaved rounds, each timing every variant once: on a busy machine the load moves
        # between rounds, so each ratio is taken within a round and the median over rounds told.
        variants: dict[str, Callable[[], object]] = {
            "select": plain_select,
            "select+deps": plain_select_with_deps,
            "ready": store.ready_task_ids,
            "naive": list_json_naive,
            "ours": list_json,
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, fn in variants.items():
                times[name].append(best_of(fn, repeat=1))

        def p50(name: str) -> float:
            return statistics.median(times[name]) * 1000

        def ratio(name: str, over: str) -> float:
            return statistics.median(a / b for a, b in zip(times[name], times[over], strict=True))

        ready = len(store.ready_task_ids())
        print(f"board: {TASKS:,} tasks, {DEPS:,} dependencies, {ready:,} ready; {ROUNDS} rounds")
        print(f"plain SELECT of tasks              {p50('select'):8.1f} ms")
        print(f"plain SELECT of tasks + deps       {p50('select+deps'):8.1f} ms")
        print(
            f"ready()                            {p50('ready'):8.1f} ms   "
            f"ratio {ratio('ready', 'select+deps'):5.1f}x the plain SELECT of tasks + deps"
        )
        print(
            f"task list --json, naive (models)   {p50('naive'):8.1f} ms   "
            f"ratio {ratio('naive', 'select'):5.1f}x the plain SELECT of tasks"
        )
        print(
            f"task list --json, ours             {p50('ours'):8.1f} ms   "
            f"ratio {ratio('ours', 'select'):5.1f}x the plain SELECT of tasks (goal <= 3x), "
            f"{ratio('ours', 'select+deps'):4.1f}x tasks + deps; "
            f"naive/ours {ratio('naive', 'ours'):4.1f}x"
        )
        print("(ratios: the median over rounds of each round's ratio)")
        store.close()
        raw.close()


if __name__ == "__main__":
    main()
