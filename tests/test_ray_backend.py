"""The Ray backend end to end: `sf serve --backend ray` against a real multi-node Ray cluster on
this machine (`ray.cluster_utils.Cluster`: a head with no slots and two nodes, each with its own
working directory), the real CLI against the scripted endpoint, and a bare `origin` that is the
only thing the nodes and the head share.

One cluster serves the whole module (it takes seconds to start); the node-loss test removes a
node, so it runs last.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SfRunner, git, write_config
from serve_helpers import FAKE_KEY, commit_steps, run_serve, start_serve, wait_until
from stoneforge.demo import FakeModel, Step
from stoneforge.service import Service

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]

_MB = 1024 * 1024
NODES = ("node-a", "node-b")


class LocalCluster:
    def __init__(self, cluster: Any, dirs: dict[str, Path], nodes: dict[str, Any], temp: Path):
        self.cluster = cluster
        self.dirs = dirs  # node name -> its STONEFORGE_NODE_DIR
        self.nodes = nodes  # node name -> the Cluster's node handle
        self.temp = temp  # Ray's own session files (logs, sockets)

    @property
    def address(self) -> str:
        return self.cluster.address

    def node_of(self, path: str | Path) -> str | None:
        for name, base in self.dirs.items():
            if str(path).startswith(str(base)):
                return name
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    from ray.cluster_utils import Cluster

    work = tmp_path_factory.mktemp("ray-nodes")
    # Ray's sockets live under its temp dir: keep the path short (a socket path has ~107 bytes).
    temp = Path(tempfile.mkdtemp(prefix="sfray-", dir="/tmp"))
    small = {"object_store_memory": 80 * _MB}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **small,
            "num_cpus": 0,  # the head (here: of Ray) runs none of our work
            "include_dashboard": False,
            "temp_dir": str(temp),
        },
    )
    dirs, nodes = {}, {}
    for name in NODES:
        dirs[name] = work / name
        dirs[name].mkdir()
        nodes[name] = cluster.add_node(
            **small,
            num_cpus=1,
            resources={"stoneforge_agent_slots": 1, "stoneforge_check_slots": 1},
            env_vars={"STONEFORGE_NODE_DIR": str(dirs[name])},
        )
    cluster.wait_for_nodes()
    try:
        yield LocalCluster(cluster, dirs, nodes, temp)
    finally:
        cluster.shutdown()


def _repo_with_origin(initialised: Path, tmp_path: Path, cluster: LocalCluster, extra: str) -> Path:
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(initialised), str(origin)], check=True)
    git(initialised, "remote", "add", "origin", str(origin))
    write_config(
        initialised,
        "orchestrator:\n  backend: ray\n  retryBackoffS: 0.2\n  maxAttempts: 2\n"
        f"ray:\n  address: {cluster.address}\n  recoveryIntervalS: 1\n"
        "merge:\n  remote: origin\n  batchSize: 2\n" + extra,
    )
    return origin


def _session_nodes(model: FakeModel, cluster: LocalCluster) -> dict[str, set[str | None]]:
    """Which node each script's requests came from (by the CLI's working directory)."""
    found: dict[str, set[str | None]] = {}
    for request in model.main_requests():
        found.setdefault(request.script or "", set()).add(cluster.node_of(request.cwd or ""))
    return found


def test_six_tasks_spread_over_both_nodes_land_checked_on_nodes_and_the_key_stays_out_of_ray(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path, cluster: LocalCluster
) -> None:
    checked = tmp_path / "checked.log"
    origin = _repo_with_origin(
        initialised,
        tmp_path,
        cluster,
        f"  checkOn: cluster\n  checks:\n    - pwd >> {checked}\n"
        '    - test -z "$(git status --porcelain)"\n',
    )
    ids = [sf("task", "create", "--title", f"Feature {n}").stdout.strip() for n in range(6)]
    for n, task_id in enumerate(ids):
        fake_model.add_script(
            commit_steps(f"feature_{n}.py", f"VALUE = {n}\n", f"Add feature {n}", delay_s=0.3),
            marker=f"Stoneforge task {task_id}:",
        )

    code, out, err = run_serve(initialised, fake_model, "--backend", "ray", timeout=420)
    assert code == 0, f"{out}\n{err}"

    for n, task_id in enumerate(ids):
        task = sf("task", "show", task_id, "--json").json()
        assert task["status"] == "merged", task
        assert git(origin, "show", f"main:feature_{n}.py") == f"VALUE = {n}"
    # Every session ran on a node (its CLI's working directory was there), and both nodes ran some.
    by_script = _session_nodes(fake_model, cluster)
    assert len(by_script) == 6, by_script
    assert all(len(nodes) == 1 and None not in nodes for nodes in by_script.values()), by_script
    assert set().union(*by_script.values()) == set(NODES), by_script
    # The head recorded each session as for a local one: its tokens, its end, no pid of a node.
    for task_id in ids:
        [session] = sf("task", "show", task_id, "--json").json()["sessions"]
        assert session["status"] == "completed", session
        assert session["outputTokens"] > 0 and session["providerSessionId"], session
        assert session["pid"] is None, session

    # The steward's checks ran as Ray tasks, in check checkouts on the nodes, never here.
    where = {cluster.node_of(line) for line in checked.read_text().splitlines()}
    assert where and None not in where, checked.read_text()

    _assert_key_absent_from_ray(cluster)


def _assert_key_absent_from_ray(cluster: LocalCluster) -> None:
    """The API key reached the actors only as a call argument: Ray's job, actor and task
    metadata (what its state API shows), its internal key-value store and its session files
    hold no trace of it."""
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        from ray._private.state import state
        from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list

        actors = state.actor_table(None)
        assert any("AgentSlot" in json.dumps(a, default=str) for a in actors.values()), actors
        metadata = {
            "jobs": state.job_table(),
            "actors": actors,
            "tasks": state._get_all_task_events() if hasattr(state, "_get_all_task_events") else [],
            "kv": {
                repr((namespace, key)): _internal_kv_get(key, namespace=namespace)
                for namespace in (None, b"job", b"fun", b"session")
                for key in _internal_kv_list(b"", namespace=namespace)
            },
        }
        dump = json.dumps(metadata, default=repr)
        assert FAKE_KEY not in dump
    finally:
        ray.shutdown()
    for path in cluster.temp.rglob("*"):
        if path.is_file() and not path.is_socket():
            with open(path, "rb") as handle:
                assert FAKE_KEY.encode() not in handle.read(), path


def test_losing_a_node_mid_task_redispatches_it_on_the_other_with_its_pushed_work(
    initialised: Path, sf: SfRunner, fake_model: FakeModel, tmp_path: Path, cluster: LocalCluster
) -> None:
    origin = _repo_with_origin(initialised, tmp_path, cluster, "  checks: ['true']\n")
    task_id = sf("task", "create", "--title", "Survive a node").stdout.strip()
    recovery = f"refs/stoneforge/recovery/{task_id}/1"
    # The retry (its prompt names the recovery ref) brings the saved file back and commits it.
    fake_model.add_script(
        [
            Step.bash(
                f"git checkout {recovery} -- draft.txt && git add -A && git commit -qm draft"
            ),
            Step.mcp("complete_task", summary="Recovered the draft"),
            Step.say("Done."),
        ],
        marker=f"saved at {recovery}",
        name="retry",
    )
    fake_model.add_script(
        [
            Step.write("done.txt", "committed\n"),
            Step.bash("git add done.txt && git commit -qm 'First part'"),
            Step.write("draft.txt", "not committed yet\n"),
            # A long command mid-task (the CLI itself refuses a bare long `sleep`).
            Step.bash("python3 -c 'import time; time.sleep(100)'", text="Running the slow part."),
        ],
        marker=f"Stoneforge task {task_id}:",
        name="first",
    )
    proc = start_serve(initialised, fake_model, "--backend", "ray", "--until-idle")
    try:
        # The node pushed the commit and (at a turn end or on its interval) the draft.
        def draft_pushed() -> bool:
            refs = git(origin, "for-each-ref", "--format=%(refname)", "refs/stoneforge/wip/")
            return any(
                "draft.txt" in git(origin, "ls-tree", "--name-only", ref) for ref in refs.split()
            )

        assert wait_until(draft_pushed, timeout=240), _serve_output(proc)
        # `sf status` shows the nodes, their slots, and the one in use.
        status = sf("status", "--json").json()
        nodes = status["nodes"]
        assert nodes, sf("status").stdout
        assert [(n["agentSlots"], n["checkSlots"]) for n in nodes] == [(1, 1), (1, 1)], nodes
        assert sum(n["busy"] for n in nodes) == 1, nodes
        assert "agent slots busy" in sf("status").stdout
        # Each node names the sessions on it, and the editor's agents carry their node.
        [(busy_node, running)] = [(n["nodeId"], n["sessions"]) for n in nodes if n["sessions"]]
        with Service.open(initialised) as service:
            agents = {a["sessionId"]: a["node"] for a in service.running_agents()}
        assert running[0] in agents and agents[running[0]]["nodeId"] == busy_node, (agents, nodes)
        [first] = fake_model.main_requests("first")[:1]
        lost = cluster.node_of(first.cwd or "")
        assert lost in NODES
        cluster.cluster.remove_node(cluster.nodes[lost])
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"{out}\n{err}"

    task = sf("task", "show", task_id, "--json").json()
    assert task["status"] == "merged", task
    # Nothing lost: the commit made on the lost node and the draft it never committed landed.
    assert git(origin, "show", "main:done.txt") == "committed"
    assert git(origin, "show", "main:draft.txt") == "not committed yet"
    # The retry ran on the other node, told where the saved work was, exactly as after a crash.
    retried = {cluster.node_of(r.cwd or "") for r in fake_model.main_requests("retry")}
    assert retried == set(NODES) - {lost}, retried
    assert recovery in fake_model.main_requests("retry")[0].first_user_text
    crashed, landed = task["sessions"]
    assert crashed["status"] == "crashed" and "was lost" in crashed["error"], crashed
    assert landed["status"] == "completed", landed
    assert git(initialised, "show", f"{recovery}:draft.txt") == "not committed yet"


def _serve_output(proc: subprocess.Popen[str]) -> str:
    os.killpg(proc.pid, 9)
    out, err = proc.communicate()
    return f"stdout:\n{out}\nstderr:\n{err}"
