"""The language server's own cost: requests over stdio vs the same calls on the service facade.

Starts the real server (`python -m stoneforge lsp --stdio`) in a throwaway repository and talks
JSON-RPC to it over its stdio with a minimal client (Content-Length framing, notifications
skipped). Beside every request, the same call is made on `Service` in this process, on the same
database, and the rounds alternate which side goes first, so a busy shared machine slows both
sides alike. The ratio is the protocol's own cost (params validation, worker thread, JSON
encoding, the pipe, the client's JSON decoding).

- `stoneforge/createTask` round trip, p50 and p95 (goal p50 <= 20 ms), on a small board;
- `stoneforge/taskTree` with 10,000 tasks (goal <= 100 ms), on a board filled with rows
  inserted directly (setup only): 20 plans, 10,000 dependencies, sessions, merge requests and
  handoffs for the tasks past `open`. The lean tree (what the editor asks for) beside the full
  tree (`{"full": true}`: every task with its sessions, handoffs, checks, as before), both over
  stdio, rounds alternating;
- a `stoneforge/changed` delta for one task change on that board (goal <= 5 ms): the server's own
  work from the store write to the notification's payload (reading the new events, their summary,
  the lean board catching up with the store: the rows they touched, in one snapshot; then the
  JSON), timed in this
  process on the same database, beside re-reading the whole lean board (what a client without
  deltas would have to fetch); and the write-to-notification time over stdio, for one change
  after a quiet spell (the watcher probes every 2 ms and sends such a change at once; a burst
  is gathered into at most one notification per 100 ms).

    .venv/bin/python bench/bench_lsp.py [--creates 200] [--trees 7] [--tasks 10000] [--big-creates 15] [--deltas 30]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stoneforge.lsp.board import LeanBoard
from stoneforge.lsp.changes import changed_payload
from stoneforge.models import utcnow
from stoneforge.service import Service

CREATE_GOAL_MS = 20.0
TREE_GOAL_MS = 100.0
DELTA_GOAL_MS = 5.0
GIT_ENV_CONFIG = ["-c", "user.name=bench", "-c", "user.email=bench@stoneforge.invalid"]


# -- a minimal JSON-RPC client over the server's stdio ---------------------------------------------


class StdioClient:
    def __init__(self, command: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._next_id = 0

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("the server closed its stdout")
            line = line.strip()
            if not line:
                break
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ValueError("a message without Content-Length")
        return json.loads(self.proc.stdout.read(length))

    def wait_notification(
        self, method: str, matches: Callable[[Any], bool], timeout_s: float = 10.0
    ) -> Any:
        """The params of the first notification ``method`` whose params match."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self._read()
            wanted = message.get("method") == method and "id" not in message
            if wanted and matches(message.get("params")):
                return message["params"]
        raise TimeoutError(f"no matching {method} within {timeout_s} s")

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any) -> Any:
        """The result; notifications (stoneforge/changed, ...) that arrive meanwhile are skipped."""
        self._next_id += 1
        msg_id = self._next_id
        self._send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        while True:
            message = self._read()
            if "method" in message:
                if "id" in message:  # a request from the server: accept it
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            if message.get("id") == msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result")

    def initialize(self, root: Path) -> None:
        self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {},
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
            },
        )
        self.notify("initialized", {})

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


# -- setup -----------------------------------------------------------------------------------------


def make_repo(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "README.md").write_text("bench\n")
    (root / ".stoneforge").mkdir()
    (root / ".stoneforge" / "config.yaml").write_text("merge:\n  checks: []\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *GIT_ENV_CONFIG, *args], cwd=root, check=True)


def populate(db: Path, tasks: int, seed: int = 11) -> None:
    """A big board, inserted directly (setup only; the product writes through Store methods)."""
    rng = random.Random(seed)
    now = utcnow().isoformat(timespec="milliseconds")
    with sqlite3.connect(db) as conn:
        plan0 = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM plans").fetchone()[0]
        task0 = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM tasks").fetchone()[0]
        plans = [f"p{plan0 + i}" for i in range(1, 21)]
        conn.executemany(
            "INSERT INTO plans (seq, id, title, goal, status, created_at) VALUES (?,?,?,?,?,?)",
            [
                (plan0 + i, pid, f"plan {i}", "a goal", "active" if i % 4 else "draft", now)
                for i, pid in enumerate(plans, 1)
            ],
        )
        statuses = ["open"] * 12 + ["merged"] * 5 + ["in_progress", "review", "failed"]
        rows = []
        for i in range(task0 + 1, task0 + tasks + 1):
            status = rng.choice(statuses)
            worked = status != "open"
            rows.append(
                (
                    i,
                    f"t{i}",
                    f"task {i}: do the thing number {i}",
                    "A description of a few words, as a director would write it.",
                    rng.choice(plans) if rng.random() < 0.8 else None,
                    rng.randint(1, 5),
                    status,
                    f"sf/t{i}-do-the-thing" if worked else None,
                    f"/tmp/worktrees/t{i}-do-the-thing" if worked else None,
                    1 if worked else 0,
                    now,
                    now,
                )
            )
        conn.executemany(
            "INSERT INTO tasks (seq, id, title, description, plan_id, priority, status, branch, "
            "worktree, attempts, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        # The events the store would have written with them, so that a running server's lean
        # board (which follows the event log) sees the new tasks.
        conn.executemany(
            "INSERT INTO events (at, actor, kind, entity, entity_id, data) VALUES (?,?,?,?,?,?)",
            [(now, "bench", "task.created", "task", r[1], "{}") for r in rows],
        )
        edges: set[tuple[int, int]] = set()
        while len(edges) < tasks:
            a = rng.randint(task0 + 2, task0 + tasks)
            b = rng.randint(task0 + 1, a - 1)  # edges point to older tasks: acyclic
            edges.add((a, b))
        conn.executemany(
            "INSERT INTO deps (task_id, depends_on) VALUES (?, ?)",
            [(f"t{a}", f"t{b}") for a, b in edges],
        )
        worked_rows = [r for r in rows if r[6] != "open"]
        s0 = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM sessions").fetchone()[0]
        conn.executemany(
            "INSERT INTO sessions (seq, id, task_id, role, status, pid, provider_session_id, "
            "context_tokens, input_tokens, output_tokens, cost_usd, started_at, ended_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    s0 + n,
                    f"s{s0 + n}",
                    r[1],
                    "worker",
                    "running" if r[6] == "in_progress" else "completed",
                    4242,
                    f"provider-{n}",
                    52_000,
                    180_000,
                    9_000,
                    0.42,
                    now,
                    None if r[6] == "in_progress" else now,
                )
                for n, r in enumerate(worked_rows, 1)
            ],
        )
        m0 = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM merge_requests").fetchone()[0]
        checks = json.dumps(
            [{"command": "pytest -q", "exit_code": 0, "duration_s": 3.2, "output_tail": "ok"}]
        )
        conn.executemany(
            "INSERT INTO merge_requests (seq, id, task_id, status, branch, candidate_commit, "
            "merged_commit, checks, summary, created_at, merged_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    m0 + n,
                    f"mr{m0 + n}",
                    r[1],
                    "merged" if r[6] == "merged" else "pending",
                    r[7],
                    "c" * 40,
                    "m" * 40 if r[6] == "merged" else None,
                    checks if r[6] == "merged" else "[]",
                    "Did the thing.\n\nCommits:\n- abc123 do it",
                    now,
                    now if r[6] == "merged" else None,
                )
                for n, r in enumerate((r for r in rows if r[6] in ("merged", "review")), 1)
            ],
        )
        h0 = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM handoffs").fetchone()[0]
        body = json.dumps(
            {
                "done": "Half of it.",
                "remaining": "The other half.",
                "files_touched": ["src/a.py", "tests/test_a.py"],
                "decisions": ["keep it small"],
                "failing_tests": [],
                "next_step": "Write the other half.",
            }
        )
        conn.executemany(
            "INSERT INTO handoffs (seq, id, task_id, session_id, body, commit_sha, source, "
            "created_at) VALUES (?,?,?,?,?,?,?,?)",
            [
                (h0 + n, f"h{h0 + n}", r[1], None, body, "c" * 40, "agent", now)
                for n, r in enumerate(worked_rows[::10], 1)
            ],
        )


# -- measuring -------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(
    rounds: int, ours: Callable[[], object], direct: Callable[[], object]
) -> tuple[list[float], list[float], list[float]]:
    """Times of each side, and the per-round ratios; the first side alternates every round."""
    t_ours: list[float] = []
    t_direct: list[float] = []
    ratios: list[float] = []
    for r in range(rounds):
        if r % 2:
            b = timed(direct)
            a = timed(ours)
        else:
            a = timed(ours)
            b = timed(direct)
        t_ours.append(a)
        t_direct.append(b)
        ratios.append(a / b)
    return t_ours, t_direct, ratios


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def verdict(value_s: float, goal_ms: float) -> str:
    return f"goal <= {goal_ms:.0f} ms: {'met' if value_s * 1000 <= goal_ms else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--trees", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--big-creates", type=int, default=15)
    parser.add_argument("--deltas", type=int, default=30)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sf-bench-lsp-") as tmp:
        root = Path(tmp) / "repo"
        make_repo(root)
        client = StdioClient([sys.executable, "-m", "stoneforge", "lsp", "--stdio"], root)
        try:
            client.initialize(root)  # the server runs Service.init: config, state db
            service = Service.open(root, actor="bench")

            # Warm both sides (imports, pydantic schemas, the server's worker threads).
            for _ in range(5):
                client.request("stoneforge/createTask", {"title": "warm up"})
                service.create_task("warm up")
            n = 0

            def lsp_create() -> None:
                nonlocal n
                n += 1
                client.request("stoneforge/createTask", {"title": f"lsp {n}", "priority": 2})

            def direct_create() -> None:
                nonlocal n
                n += 1
                service.create_task(f"direct {n}", priority=2)

            c_lsp, c_direct, c_ratio = side_by_side(opts.creates, lsp_create, direct_create)

            populate(service.store.path, opts.tasks - len(service.list_tasks()))
            tasks = len(service.list_tasks())
            tree: dict[str, Any] = {}

            def lsp_tree() -> None:
                tree.update(client.request("stoneforge/taskTree", {}))

            client.request("stoneforge/taskTree", {})  # warm
            client.request("stoneforge/taskTree", {"full": True})

            def lsp_full_tree() -> None:
                client.request("stoneforge/taskTree", {"full": True})

            t_lsp, t_full, t_ratio = side_by_side(opts.trees, lsp_tree, lsp_full_tree)
            lean_text = json.dumps(tree, separators=(",", ":"))  # as the server sends it
            lean_size = len(lean_text)
            t_loads = statistics.median(timed(lambda: json.loads(lean_text)) for _ in range(3))
            size = len(json.dumps(service.full_task_tree()))
            t_read = statistics.median(timed(service.task_tree) for _ in range(3))

            # One task changes: the server's own path from the store write to the payload.
            board = LeanBoard(service)
            board.tree()
            open_ids = [t["id"] for t in tree["unplanned"] if t["status"] == "open"]
            d_write: list[float] = []
            d_server: list[float] = []
            for k in range(opts.deltas):
                task_id = open_ids[k % len(open_ids)]
                start = time.perf_counter()
                service.store.update_task(task_id, priority=1 + k % 5)
                written = time.perf_counter()
                # What the watcher and ChangeWatcher._deliver do: the new events, their summary
                # and the board's delta, encoded.
                delta = changed_payload(service.store.events_since(board.version or 0))
                delta.update(board.advance())
                json.dumps(delta)
                done = time.perf_counter()
                assert task_id in [t["id"] for t in delta["tasks"]], delta
                d_write.append(written - start)
                d_server.append(done - written)
            d_full = statistics.median(
                timed(lambda: json.dumps(service.task_tree())) for _ in range(3)
            )
            # Over stdio: the write, then the notification that carries the row.
            d_stdio: list[float] = []
            for k in range(max(3, opts.deltas // 5)):
                task_id = open_ids[-1 - k]
                time.sleep(0.3)  # one change after a quiet spell (a burst is gathered: 100 ms)
                start = time.perf_counter()
                service.store.update_task(task_id, title=f"renamed {k}")
                client.wait_notification(
                    "stoneforge/changed",
                    lambda p, task_id=task_id: any(
                        t["id"] == task_id for t in (p or {}).get("tasks", [])
                    ),
                )
                d_stdio.append(time.perf_counter() - start)
            # createTask again, now that the board is big.
            b_lsp, b_direct, b_ratio = side_by_side(opts.big_creates, lsp_create, direct_create)
            service.close()
        finally:
            client.close()

    def create_lines(label: str, lsp: list[float], direct: list[float], ratio: list[float]) -> None:
        p50 = statistics.median(lsp)
        print(label)
        print(
            f"  over stdio (real server)      p50 {ms(p50)}   p95 {ms(pct(lsp, 95))}   "
            f"{verdict(p50, CREATE_GOAL_MS)}"
        )
        print(
            f"  Service.create_task direct    p50 {ms(statistics.median(direct))}   "
            f"p95 {ms(pct(direct, 95))}"
        )
        print(f"  ratio (median of per-round ratios)  {statistics.median(ratio):5.1f}x")

    create_lines(
        f"createTask round trip, {opts.creates} rounds on a small board "
        f"(goal p50 <= {CREATE_GOAL_MS:.0f} ms)",
        c_lsp,
        c_direct,
        c_ratio,
    )
    print(
        f"taskTree with {tasks:,} tasks, {opts.trees} rounds: lean {lean_size / 1e6:.1f} MB, "
        f"full {size / 1e6:.1f} MB (goal <= {TREE_GOAL_MS:.0f} ms)"
    )
    print(
        f"  lean over stdio (real server)  p50 {ms(statistics.median(t_lsp))}   "
        f"min {ms(min(t_lsp))}   {verdict(statistics.median(t_lsp), TREE_GOAL_MS)}"
    )
    print(
        f"  full over stdio (as before)    p50 {ms(statistics.median(t_full))}   "
        f"min {ms(min(t_full))}"
    )
    print(f"  ratio lean/full (median of per-round ratios)  {statistics.median(t_ratio):5.2f}x")
    print(
        f"  of which the client's json.loads of the reply {ms(t_loads).strip()}; reading the lean "
        f"board from the store (what the server's in-memory board saves) {ms(t_read).strip()}"
    )
    print(
        f"stoneforge/changed delta for one task change on {tasks:,} tasks, {opts.deltas} rounds "
        f"(goal <= {DELTA_GOAL_MS:.0f} ms)"
    )
    p50 = statistics.median(d_server)
    print(
        f"  server's own work, write -> payload   p50 {ms(p50)}   p95 {ms(pct(d_server, 95))}   "
        f"{verdict(p50, DELTA_GOAL_MS)}"
    )
    print(f"  the store write itself                p50 {ms(statistics.median(d_write))}")
    print(f"  re-reading the lean board instead     p50 {ms(d_full)}")
    print(
        f"  over stdio, write -> notification     p50 {ms(statistics.median(d_stdio))}   "
        f"{verdict(statistics.median(d_stdio) - statistics.median(d_write), DELTA_GOAL_MS)} "
        "(less the write itself)"
    )
    create_lines(
        f"createTask round trip, {opts.big_creates} rounds on the board of {tasks:,} tasks",
        b_lsp,
        b_direct,
        b_ratio,
    )


if __name__ == "__main__":
    main()
