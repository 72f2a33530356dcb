"""The Ray backend's configuration: what it needs is said at once, with the key and its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SfRunner
from stoneforge.config import parse_config
from stoneforge.errors import ConfigError


def test_the_ray_backend_needs_a_remote_and_says_which_key_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("orchestrator:\n  maxAttempts: 2\n  backend: ray\n", source="cfg.yaml")
    assert "cfg.yaml:3: orchestrator.backend: ray needs merge.remote" in str(caught.value)


def test_checks_on_the_cluster_need_the_ray_backend() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("merge:\n  remote: origin\n  checkOn: cluster\n", source="cfg.yaml")
    assert "cfg.yaml:3: merge.checkOn: cluster" in str(caught.value)
    assert "orchestrator.backend: ray" in str(caught.value)


def test_a_complete_ray_configuration_loads_with_its_defaults() -> None:
    config = parse_config(
        "orchestrator: {backend: ray}\nmerge: {remote: origin, checkOn: cluster}\n"
    )
    assert (config.ray.address, config.ray.recoveryIntervalS) == ("auto", 10.0)
    assert parse_config("").orchestrator.backend == "local"


def test_serve_with_the_ray_backend_but_no_remote_stops_before_anything_runs(
    initialised: Path, sf: SfRunner
) -> None:
    result = sf("serve", "--backend", "ray", "--until-idle", check=False)
    assert result.returncode == 1
    assert "the Ray backend needs merge.remote" in result.stderr
    assert "config.yaml" in result.stderr
