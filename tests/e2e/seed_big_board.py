"""A big board for the extension's end-to-end test: 10,000 tasks, seeded as fast as it gets.

Usage: ``python tests/e2e/seed_big_board.py DIR [--tasks N]`` (with the venv's python). Prints a
JSON object: the repository, the number of tasks, and the task to watch.

A git repository with `sf init`, then a first plan made through the store (so it renders first,
on screen: "Watch this plan" with one task in progress that has a session and a handoff, the row
the test expands), then the rest inserted straight into SQLite by the LSP benchmark's `populate`
(20 plans, dependencies, sessions, merge requests, handoffs, and their events).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from stoneforge.models import Handoff, SessionRole, utcnow
from stoneforge.service import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_lsp import populate  # noqa: E402  (the benchmark's board, shared, not copied)

GIT = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@stoneforge.invalid"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--tasks", type=int, default=10_000)
    opts = parser.parse_args()
    root: Path = opts.dir
    root.mkdir(parents=True)
    (root / "README.md").write_text("a big board\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run([*GIT, *args], cwd=root, check=True)
    service, _ = Service.init(root)
    with service:
        store = service.store
        plan = service.create_plan("Watch this plan", activate=True)
        task = service.create_task("Watched task", plan_id=plan.id, priority=1)
        store.dispatch_task(task.id)
        session = store.start_session(task.id, SessionRole.WORKER)
        store.update_session(session.id, context_tokens=42_000, cost_usd=0.12)
        store.add_handoff(
            Handoff(
                task_id=task.id,
                session_id=session.id,
                done="Half of it.",
                remaining="The rest.",
                next_step="Finish the watched task.",
                created_at=utcnow(),
            )
        )
        populate(store.path, opts.tasks - 1)
        total = len(store.lean_board()[2])
    print(
        json.dumps(
            {
                "root": str(root),
                "tasks": total,
                "planId": plan.id,
                "taskId": task.id,
                "sessionId": session.id,
            }
        )
    )


if __name__ == "__main__":
    main()
