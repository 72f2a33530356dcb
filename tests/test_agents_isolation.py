"""Sessions stay apart: secrets out of logs and events, parallel worktrees, own config
dirs, and resuming a provider session (real CLI against the scripted endpoint)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from stoneforge.agents import (
    AGENT_EVENT_ADAPTER,
    AgentEvent,
    ClaudeCodeProvider,
    FailureKind,
    SessionOutcome,
    SessionSpec,
    ToolResult,
    run_session,
)
from stoneforge.demo import FakeModel, RecordedRequest, Step
from stoneforge.demo.recording import key_fingerprint
from stoneforge.git.task_clone import ensure_task_clone, publish

pytest_plugins = ["fake_model_fixtures"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
]

RepoFactory = Callable[..., Path]
Git = Callable[..., str]
SpecFactory = Callable[..., SessionSpec]


def _echo_last_tool_result(request: RecordedRequest) -> Step:
    # A careless model repeating what the shell printed, key included if it was there.
    results = request.tool_results()
    return Step.say("I saw: " + (request.tool_result_text(results[0]) if results else ""))


async def test_api_key_never_reaches_events_or_logs(
    fake_api_key: str,
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    repo = git_repo()
    fake_model.add_script(
        [
            Step.bash(f"echo leaked=$ANTHROPIC_API_KEY; echo typed={fake_api_key}"),
            _echo_last_tool_result,
        ],
        cwd=repo,
    )
    events: list[AgentEvent] = []
    spec = agent_spec("worker", repo)
    with caplog.at_level(logging.DEBUG):
        outcome = await run_session(claude_provider, spec, on_event=events.append)
    assert outcome.status == "completed"
    # The key did reach the endpoint, through the environment only.
    assert fake_model.main_requests()[0].api_key_fingerprint == key_fingerprint(fake_api_key)
    # The shell really printed it (the model saw it), yet none of our output holds it.
    seen = fake_model.main_requests()[1].all_text
    assert fake_api_key in seen
    dumped = json.dumps([AGENT_EVENT_ADAPTER.dump_python(e, mode="json") for e in events])
    assert fake_api_key not in dumped and "[REDACTED]" in dumped
    assert fake_api_key not in caplog.text
    assert fake_api_key not in repr(outcome)
    tool_result = next(e for e in events if isinstance(e, ToolResult))
    assert "typed=[REDACTED]" in tool_result.content
    # Nothing of ours wrote it under the session's config dir except the CLI's transcript
    # of what the model saw (the tool output itself).
    for path in spec.config_dir.rglob("*"):
        if path.is_file() and fake_api_key in path.read_text(errors="replace"):
            assert path.suffix == ".jsonl" and "projects" in path.parts, path


def _after_both_started(model: FakeModel, step: Step) -> Callable[[RecordedRequest], Step]:
    """Hold each session's first answer until both sessions have asked (a barrier in the
    endpoint's handler threads), so the two are provably in flight at once."""

    def wait(request: RecordedRequest) -> Step:
        model.wait_for(lambda m: len({r.script for r in m.main_requests()}) == 2, timeout=30)
        return step

    return wait


async def test_two_sessions_run_in_parallel_in_their_own_clones(
    git: Git,
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    tmp_path: Path,
) -> None:
    repo = git_repo()
    worktrees = []
    for name in ("t1", "t2"):
        path = tmp_path / "worktrees" / name
        ensure_task_clone(repo, path, f"sf/{name}", start_point="main")
        worktrees.append(path)
        fake_model.add_script(
            [
                _after_both_started(fake_model, Step.write(str(path / f"{name}.txt"), name)),
                Step.bash(f"git add {name}.txt && git commit -q -m 'work {name}'"),
                Step.say(f"{name} done"),
            ],
            cwd=path,
        )
    specs = [agent_spec("worker", path, repo_root=repo) for path in worktrees]
    outcomes: list[SessionOutcome] = []

    async def run(spec: object) -> None:
        outcomes.append(await run_session(claude_provider, spec))  # type: ignore[arg-type]

    async with anyio.create_task_group() as tg:
        for spec in specs:
            tg.start_soon(run, spec)
    assert [o.status for o in outcomes] == ["completed", "completed"]
    assert fake_model.max_concurrency == 2
    for name, path in zip(("t1", "t2"), worktrees, strict=True):
        assert git(path, "log", "-1", "--format=%s", f"sf/{name}") == f"work {name}"
        publish(repo, path, f"sf/{name}")  # the repository has the branch once fetched back
        assert git(repo, "log", "-1", "--format=%s", f"sf/{name}") == f"work {name}"
        other = "t2" if name == "t1" else "t1"
        assert not (path / f"{other}.txt").exists()
    assert git(repo, "log", "-1", "--format=%s", "main") == "initial"
    config_dirs = [s.config_dir for s in specs]
    assert config_dirs[0] != config_dirs[1]
    for config_dir in config_dirs:  # each CLI kept its state in its own directory
        assert list((config_dir / "projects").rglob("*.jsonl"))
    assert len({o.provider_session_id for o in outcomes}) == 2
    assert len({r.session_id for r in fake_model.main_requests()}) == 2


async def test_resume_continues_the_provider_session(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script(
        [Step.say("The secret word is PINEAPPLE."), Step.say("Resumed.")], cwd=repo
    )
    spec = agent_spec("worker", repo, prompt="Remember a word.")
    first = await run_session(claude_provider, spec)
    assert first.status == "completed" and first.provider_session_id
    resumed = spec.resumed(first.provider_session_id, "What was the word?")
    second = await run_session(claude_provider, resumed)
    assert second.status == "completed" and second.last_text == "Resumed."
    last = fake_model.main_requests()[-1]
    assert "PINEAPPLE" in last.all_text and "What was the word?" in last.all_text
    assert second.provider_session_id == first.provider_session_id
    # Another config dir cannot resume: the transcript lives in the first one.
    other = dataclasses.replace(resumed, config_dir=spec.config_dir.parent / "elsewhere")
    third = await run_session(claude_provider, other)
    assert third.status == "failed" and third.failure is not None
    assert third.failure.kind == FailureKind.STARTUP and "No conversation found" in third.error
