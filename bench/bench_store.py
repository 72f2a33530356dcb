"""Store and graph speed on a large board: 10,000 tasks and 30,000 dependencies.

Prints our `ready()` and `task list --json` beside a plain SELECT of the same rows, measured in
the same run; `task list --json` the naive way too (a model per task, `Task.wire()`, Python's
indented `json.dumps`) beside ours (dicts straight from the rows, the same text written by
pydantic-core). Both produce the CLI's exact output; the run checks that they are equal.
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

from stoneforge import json_text
from stoneforge.models import utcnow
from stoneforge.store import Store

TASKS = 10_000
DEPS = 30_000


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
            return json_text.dumps(store.list_task_wires())

        if list_json() != list_json_naive():
            raise SystemExit("task list --json: ours and the naive way differ")

        t_select = best_of(plain_select)
        t_select_deps = best_of(plain_select_with_deps)
        t_ready = best_of(store.ready_task_ids)
        t_naive = best_of(list_json_naive, repeat=3)
        t_list = best_of(list_json)
        ready = len(store.ready_task_ids())
        print(f"board: {TASKS:,} tasks, {DEPS:,} dependencies, {ready:,} ready")
        print(f"plain SELECT of tasks              {t_select * 1000:8.1f} ms")
        print(f"plain SELECT of tasks + deps       {t_select_deps * 1000:8.1f} ms")
        print(
            f"ready()                            {t_ready * 1000:8.1f} ms   "
            f"ratio {t_ready / t_select_deps:5.1f}x the plain SELECT of tasks + deps"
        )
        print(
            f"task list --json, naive (models)   {t_naive * 1000:8.1f} ms   "
            f"ratio {t_naive / t_select:5.1f}x the plain SELECT of tasks"
        )
        print(
            f"task list --json, ours (rows)      {t_list * 1000:8.1f} ms   "
            f"ratio {t_list / t_select:5.1f}x the plain SELECT of tasks (goal <= 3x); "
            f"naive/ours {t_naive / t_list:4.1f}x"
        )
        store.close()
        raw.close()


if __name__ == "__main__":
    main()
