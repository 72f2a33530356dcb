"""Every custom request with malformed params gets an error, and the server keeps answering."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import GIT_ENV
from jsonrpc_stdio import StdioClient
from lsp_helpers import SERVER_COMMAND

METHODS = [
    "createTask",
    "createPlan",
    "activatePlan",
    "cancelTask",
    "retryTask",
    "listTasks",
    "taskTree",
    "handoffs",
    "mergeRequests",
    "mergeDiff",
    "commitDiff",
    "status",
    "forecast",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "title",
    "description",
    "planId",
    "priority",
    "dependsOn",
    "status",
    "id",
    "taskId",
    "reason",
    "activate",
    "maxConcurrent",
]
bad_objects = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)
bad_params = st.one_of(json_values, bad_objects)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioClient]:
    root = tmp_path_factory.mktemp("fuzz") / "repo"
    root.mkdir()
    # No credentials: a createPlan that happens to be valid must never start a real director.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env.update(GIT_ENV)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=env)
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "-m", "init"], cwd=root, check=True, env=env
    )
    subprocess.run([*SERVER_COMMAND[:-2], "init"], cwd=root, check=True, env=env)
    client = StdioClient(SERVER_COMMAND, root, env)
    client.initialize(root)
    yield client
    client.close()


@settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(METHODS), params=bad_params)
def test_malformed_params_never_break_the_server(
    server: StdioClient, method: str, params: object
) -> None:
    response = server.request(f"stoneforge/{method}", params)
    if "error" in response:
        error = response["error"]
        assert error["code"] in (-32602, -32601), error
        assert error["message"] and "Traceback" not in error["message"]
    else:
        # Some random params are valid (e.g. {} for status, or a title for createTask).
        assert "result" in response
    # The server still answers a plain request after every one.
    alive = server.request("stoneforge/status", {})
    assert "result" in alive, alive
