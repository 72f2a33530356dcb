"""The Ray backend on a local multi-node cluster (`ray.cluster_utils.Cluster`, nodes of 1 agent
slot each), against the scripted endpoint and a bare `origin`:

1. Session start overhead: the same two-turn session run through the local provider and through
   the Ray provider, round by round (alternating which goes first), in task clones of one
   repository. Printed: the head's work before a node starts the CLI (push + the node's checkout)
   and after it ends (taking the node's work back), next to the median whole-session times.
2. Wall time of `sf serve --until-idle --backend ray` for 8 tasks whose check sleeps 5 s, with
   2 nodes and then with 1 (the same cluster after one node is removed).

    .venv/bin/python bench/bench_cluster.py [--rounds 5] [--tasks 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from stoneforge.agents import ClaudeCodeProvider, SessionSpec, build_spec, run_session
from stoneforge.config import parse_config
from stoneforge.demo import FakeModel, Step
from stoneforge.git.task_clone import ensure_task_clone

API_KEY = "sk-ant-bench-not-a-real-key-000000"
GOAL_START_MS = 150
_MB = 1024 * 1024
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def sf(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stoneforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, **(env or {})},
    )
    if proc.returncode != 0:
        raise SystemExit(f"sf {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip()


def start_cluster(temp: Path, work: Path) -> tuple[object, dict[str, object]]:
    from ray.cluster_utils import Cluster

    small = {"object_store_memory": 80 * _MB}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**small, "num_cpus": 0, "include_dashboard": False, "temp_dir": str(temp)},
    )
    nodes = {}
    for name in ("node-a", "node-b"):
        (work / name).mkdir(parents=True)
        nodes[name] = cluster.add_node(
            **small,
            num_cpus=1,
            resources={"stoneforge_agent_slots": 1, "stoneforge_check_slots": 1},
            env_vars={"STONEFORGE_NODE_DIR": str(work / name)},
        )
    cluster.wait_for_nodes()
    return cluster, nodes


def make_repo(root: Path) -> tuple[Path, Path]:
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# bench\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-q", "-m", "initial")
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(repo), str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    return repo, origin


# -- 1. session start overhead -------------------------------------------------------------------


def session_spec(model: FakeModel, repo: Path, name: str) -> SessionSpec:
    clone = ensure_task_clone(
        repo, repo / ".stoneforge" / "worktrees" / name, f"sf/{name}", start_point="main"
    ).path
    marker = f"bench session {name}"
    model.add_script(
        [Step.bash("echo hello > out.txt", text="Writing the file."), Step.say("Done.")],
        marker=marker,
    )
    return build_spec(
        "worker",
        cwd=clone,
        prompt=f"{marker}: create out.txt.",
        config_dir=repo / ".stoneforge" / "agents" / name,
        repo_root=repo,
        api_key=API_KEY,
        base_url=model.base_url,
        env=GIT_ENV,
    )


def start_overhead(address: str, rounds: int, model: FakeModel, root: Path) -> list[str]:
    from stoneforge.cluster.session import RayProvider

    repo, _ = make_repo(root / "overhead")
    config = parse_config(
        f"orchestrator: {{backend: ray}}\nmerge: {{remote: origin}}\nray: {{address: '{address}'}}\n"
    )
    local = ClaudeCodeProvider()
    ray_provider = RayProvider(root=repo, config=config, target="main")
    times: dict[str, list[float]] = {"local": [], "ray": []}

    async def one(side: str, name: str) -> None:
        spec = session_spec(model, repo, name)
        began = time.perf_counter()
        outcome = await run_session(local if side == "local" else ray_provider, spec)
        times[side].append(time.perf_counter() - began)
        if outcome.status != "completed":
            raise SystemExit(f"{side} session {name} ended {outcome.status}: {outcome.error}")

    anyio.run(one, "local", "warm-local")
    anyio.run(one, "ray", "warm-ray")
    times = {"local": [], "ray": []}
    ray_provider.stats.start_ms.clear()
    ray_provider.stats.end_ms.clear()
    for r in range(rounds):
        order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
        for side in order:
            anyio.run(one, side, f"{side}-{r}")
    stats = ray_provider.stats
    ray_provider.shutdown()
    start = statistics.median(stats.start_ms)
    end = statistics.median(stats.end_ms)
    diff = statistics.median(r - lo for r, lo in zip(times["ray"], times["local"], strict=True))
    return [
        f"session (two turns), median of {rounds}: local {statistics.median(times['local']):.2f}s"
        f" | ray {statistics.median(times['ray']):.2f}s | ray - local {diff * 1000:+.0f} ms",
        f"ray start overhead (head push + node checkout, before the CLI starts): {start:.0f} ms"
        f" (goal < {GOAL_START_MS} ms; node prepare {statistics.median(stats.prepare_ms):.0f} ms)",
        f"ray end overhead (the head takes the node's work back): {end:.0f} ms",
    ]


# -- 2. 8 tasks with 5 s checks on 2 nodes against 1 ----------------------------------------------


def serve_wall(address: str, tasks: int, root: Path) -> float:
    with FakeModel() as model:  # its own: task ids (and so the scripts' markers) repeat per run
        return _serve_wall(address, tasks, model, root)


def _serve_wall(address: str, tasks: int, model: FakeModel, root: Path) -> float:
    repo, origin = make_repo(root)
    sf(repo, "init")
    (repo / ".stoneforge" / "config.yaml").write_text(
        "orchestrator: {backend: ray, retryBackoffS: 0.2}\n"
        f"ray: {{address: '{address}'}}\n"
        "merge: {remote: origin, checks: ['sleep 5']}\n"
    )
    ids = [sf(repo, "task", "create", "--title", f"Feature {n}") for n in range(tasks)]
    for n, task_id in enumerate(ids):
        model.add_script(
            [
                Step.write(f"feature_{n}.py", f"VALUE = {n}\n"),
                Step.bash(f"git add -A && git commit -qm 'Add feature {n}'"),
                Step.say("Done."),
            ],
            marker=f"Stoneforge task {task_id}:",
        )
    began = time.perf_counter()
    out = sf(repo, "serve", "--until-idle", "--backend", "ray", env=model.env(API_KEY))
    wall = time.perf_counter() - began
    landed = git(origin, "ls-tree", "--name-only", "main").split()
    missing = [n for n in range(tasks) if f"feature_{n}.py" not in landed]
    if missing:
        raise SystemExit(f"features {missing} did not land:\n{out}\n{sf(repo, 'task', 'list')}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=8)
    opts = parser.parse_args()
    os.environ.update(GIT_ENV)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as tmp, FakeModel() as model:
        root = Path(tmp)
        temp = Path(tempfile.mkdtemp(prefix="sfray-", dir="/tmp"))
        cluster, nodes = start_cluster(temp, root / "nodes")
        try:
            address = cluster.address  # type: ignore[attr-defined]
            lines = start_overhead(address, opts.rounds, model, root) if opts.rounds else []
            print("\n".join(lines), flush=True)
            import ray

            ray.shutdown()
            if opts.tasks:  # --tasks 0: only the session overhead
                two = serve_wall(address, opts.tasks, root / "two")
                cluster.remove_node(nodes["node-b"])  # type: ignore[attr-defined]
                one = serve_wall(address, opts.tasks, root / "one")
        finally:
            cluster.shutdown()  # type: ignore[attr-defined]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"ray cluster: head + 2 nodes of 1 agent slot each, on this machine; load avg: {load}")
    if opts.tasks:
        print(
            f"{opts.tasks} tasks, check `sleep 5`: 2 nodes {two:.1f}s | 1 node {one:.1f}s"
            f" | ratio 1/2 nodes {one / two:.2f}"
        )


if __name__ == "__main__":
    main()
