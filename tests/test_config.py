"""Config: defaults, and errors that name the file, the key path and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoneforge.config import DEFAULT_CONFIG_YAML, StoneforgeConfig, load_config, parse_config
from stoneforge.errors import ConfigError


def test_defaults_match_the_documented_schema() -> None:
    config = parse_config("")
    assert config.orchestrator.maxConcurrent == 6
    assert config.orchestrator.handoffAtTokens == 140_000
    assert config.orchestrator.worktreeDir == ".stoneforge/worktrees"
    assert config.agents.worker.maxSessionTokens == 200_000
    assert config.agents.steward.autoMerge is True
    assert config.merge.targetBranch == "main"
    assert config.merge.checks == ["python -m pytest -q"]
    assert config.merge.flakyReportAfter == 3
    assert config.merge.quarantine == []


def test_written_default_file_equals_the_defaults() -> None:
    assert parse_config(DEFAULT_CONFIG_YAML) == StoneforgeConfig()


def test_partial_config_keeps_other_defaults() -> None:
    config = parse_config("orchestrator:\n  maxConcurrent: 2\nmerge:\n  checks: [make test]\n")
    assert config.orchestrator.maxConcurrent == 2
    assert config.orchestrator.handoffAtTokens == 140_000
    assert config.merge.checks == ["make test"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "orchestrator:\n  maxConcurent: 3\n",
            ["cfg.yaml:2", "orchestrator.maxConcurent", "unknown key"],
        ),
        (
            "orchestrator:\n  maxConcurrent: 6\nagents:\n  worker:\n    model: x\n    maxSessionTokens: lots\n",
            ["cfg.yaml:6", "agents.worker.maxSessionTokens", "integer"],
        ),
        ("merge:\n  checks: pytest\n", ["cfg.yaml:2", "merge.checks", "list"]),
        ("colour: blue\n", ["cfg.yaml:1", "colour", "unknown key"]),
        ("orchestrator:\n  maxConcurrent: 0\n", ["cfg.yaml:2", "orchestrator.maxConcurrent"]),
        ("merge:\n  flakyReportAfter: 0\n", ["cfg.yaml:2", "merge.flakyReportAfter"]),
        ("merge:\n  quarantine: make e2e\n", ["cfg.yaml:2", "merge.quarantine", "list"]),
        (
            "merge:\n  checks: [make test, make e2e]\n  quarantine: [make e2e2]\n",
            ["cfg.yaml:3", "merge.quarantine", "'make e2e2' is not one of merge.checks"],
        ),
    ],
)
def test_bad_values_name_file_key_and_line(text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.yaml")
    for fragment in expected:
        assert fragment in str(info.value)


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("orchestrator:\n  maxConcurrent: [1, 2\nmerge: {}\n", source="cfg.yaml")
    message = str(info.value)
    assert "cfg.yaml:" in message and "broken YAML" in message
    line = int(message.split("cfg.yaml:")[1].split(":")[0])
    assert line in (3, 4)


def test_handoff_threshold_must_be_below_the_session_limit() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("orchestrator:\n  handoffAtTokens: 250000\n", source="cfg.yaml")
    assert "handoffAtTokens" in str(info.value) and "maxSessionTokens" in str(info.value)


def test_load_config_names_the_real_path(tmp_path: Path) -> None:
    (tmp_path / ".stoneforge").mkdir()
    path = tmp_path / ".stoneforge" / "config.yaml"
    path.write_text("agents:\n  steward:\n    autoMerge: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"{path}:3" in str(info.value)
    assert "agents.steward.autoMerge" in str(info.value)
