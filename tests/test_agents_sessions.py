"""Real Claude Code sessions (the bundled CLI) against the scripted endpoint."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from stoneforge.agents import (
    AgentEvent,
    AgentSession,
    ClaudeCodeProvider,
    FailureKind,
    HandoffNote,
    Role,
    SessionSpec,
    SessionStarted,
    StoneforgeTools,
    TokenStats,
    ToolResult,
    is_alive,
    run_session,
)
from stoneforge.demo import FakeModel, Step, Usage

pytest_plugins = ["fake_model_fixtures"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
]

RepoFactory = Callable[..., Path]
Git = Callable[..., str]
SpecFactory = Callable[..., SessionSpec]


async def test_worker_writes_a_file_and_commits_it(
    git: Git,
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script(
        [
            Step.write(str(repo / "hello.py"), "print('hello')\n", text="Writing the file."),
            Step.bash("git add hello.py && git commit -q -m 'Add hello'"),
            Step.say("Done: added hello.py."),
        ],
        cwd=repo,
    )
    events: list[AgentEvent] = []
    outcome = await run_session(
        claude_provider, agent_spec(Role.WORKER, repo), on_event=events.append
    )
    assert outcome.status == "completed", outcome
    assert (repo / "hello.py").read_text() == "print('hello')\n"
    assert git(repo, "log", "-1", "--format=%s") == "Add hello"
    assert git(repo, "status", "--porcelain") == ""
    assert outcome.provider_session_id and outcome.pid
    assert outcome.last_text == "Done: added hello.py."
    assert isinstance(events[0], SessionStarted)
    results = [e for e in events if isinstance(e, ToolResult)]
    assert len(results) == 2 and not any(r.is_error for r in results)
    assert outcome.result is not None and outcome.result.num_turns == 3


async def test_token_usage_reaches_on_update_after_every_turn(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script(
        [
            Step.bash("true", usage=Usage(100, 20, 1000, 50)),
            Step.say("done", usage=Usage(300, 7, 5000, 0)),
        ],
        cwd=repo,
    )
    updates: list[TokenStats] = []

    async def on_update(stats: TokenStats) -> None:  # async callbacks are awaited
        updates.append(stats)

    outcome = await run_session(claude_provider, agent_spec("worker", repo), on_update=on_update)
    assert outcome.status == "completed"
    first, second = updates[0], updates[1]
    assert (first.context_tokens, first.input_tokens, first.output_tokens) == (1150, 100, 20)
    assert (first.cache_read_input_tokens, first.cache_creation_input_tokens) == (1000, 50)
    assert (second.context_tokens, second.input_tokens, second.output_tokens) == (5300, 400, 27)
    assert second.turns == 2
    final = outcome.stats
    assert final.cost_usd is not None and final.cost_usd > 0
    assert updates[-1] == final and final.output_tokens == 27


async def test_each_stoneforge_tool_is_called_and_recorded(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    completed: list[str] = []
    handoffs: list[HandoffNote] = []
    questions: list[str] = []

    async def ask(question: str) -> str:
        questions.append(question)
        return "Use SQLite."

    tools = StoneforgeTools(
        on_complete=completed.append, on_handoff=handoffs.append, on_ask_director=ask
    )
    fake_model.add_script(
        [
            Step.mcp("ask_director", question="Which database?"),
            Step.mcp(
                "handoff",
                done="Schema drafted",
                remaining="Migrations",
                filesTouched=["db.py"],
                decisions=["SQLite"],
                failingTests=[],
                nextStep="Write the migration",
            ),
            Step.mcp("complete_task", summary="Added the schema"),
            Step.say("All done."),
        ],
        cwd=repo,
    )
    outcome = await run_session(claude_provider, agent_spec("worker", repo, mcp=tools))
    assert outcome.status == "completed", outcome
    assert questions == ["Which database?"]
    assert completed == ["Added the schema"]
    assert handoffs == [
        HandoffNote(
            done="Schema drafted",
            remaining="Migrations",
            filesTouched=["db.py"],
            decisions=["SQLite"],
            failingTests=[],
            nextStep="Write the migration",
        )
    ]
    assert [c.tool for c in tools.calls] == ["ask_director", "handoff", "complete_task"]
    # The director's answer went back to the model as the tool result.
    answer = fake_model.main_requests()[1].tool_results()[0]
    assert "Use SQLite." in fake_model.main_requests()[1].tool_result_text(answer)


async def test_deferred_mcp_tools_are_loaded_through_tool_search(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    # Without a `tools` restriction the CLI defers MCP tools behind ToolSearch.
    import dataclasses

    repo = git_repo()
    tools = StoneforgeTools()
    fake_model.add_script([Step.mcp("complete_task", summary="ok"), Step.say("bye")], cwd=repo)
    spec = dataclasses.replace(agent_spec("worker", repo, mcp=tools), tools=None)
    outcome = await run_session(claude_provider, spec)
    assert outcome.status == "completed"
    assert [r.auto for r in fake_model.main_requests()][:2] == ["tool_search", None]
    assert [c.arguments for c in tools.calls] == [{"summary": "ok"}]


async def test_git_push_is_denied_and_nothing_reaches_the_remote(
    git: Git,
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    tmp_path: Path,
) -> None:
    repo = git_repo()
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    attempts = [
        "git push origin HEAD:main",  # caught by the CLI's deny rule and our hook
        "cd . && FOO=1 git -C . push origin HEAD:refs/heads/main",  # only our hook sees this
        "bash -c 'git push --force origin main'",
    ]
    fake_model.add_script([*[Step.bash(c) for c in attempts], Step.say("gave up")], cwd=repo)
    outcome = await run_session(claude_provider, agent_spec("worker", repo))
    assert outcome.status == "completed"
    results = [r.tool_results()[0] for r in fake_model.main_requests()[1:4]]
    assert all(r.get("is_error") for r in results), results
    assert git(origin, "for-each-ref") == ""  # nothing was pushed
    denied = [d.tool_input.get("command") for d in outcome.permission_denials]
    assert sorted(denied) == sorted(attempts)
    assert any("git push is not allowed" in (d.reason or "") for d in outcome.permission_denials)


async def test_worker_cannot_write_outside_its_worktree(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    tmp_path: Path,
) -> None:
    repo = git_repo()
    outside = tmp_path / "outside.txt"
    fake_model.add_script([Step.write(str(outside), "nope"), Step.say("ok")], cwd=repo)
    outcome = await run_session(claude_provider, agent_spec("worker", repo))
    assert not outside.exists()
    assert fake_model.main_requests()[1].tool_results()[0].get("is_error")
    assert [d.tool_name for d in outcome.permission_denials] == ["Write"]


async def test_director_is_read_only(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script(
        [Step.tool("Read", file_path=str(repo / "README.md")), Step.bash("touch x"), Step.say("k")],
        cwd=repo,
    )
    outcome = await run_session(claude_provider, agent_spec(Role.DIRECTOR, repo))
    offered = set(fake_model.main_requests()[0].tool_names)
    assert {"Read", "Glob", "Grep", "mcp__stoneforge__complete_task"} <= offered
    assert not offered & {"Bash", "Write", "Edit"}
    read, bash = (r.tool_results()[0] for r in fake_model.main_requests()[1:3])
    assert not read.get("is_error") and bash.get("is_error")
    assert not (repo / "x").exists() and outcome.status == "completed"


@pytest.mark.parametrize(
    ("status", "outcome_status", "retryable"), [(529, "crashed", True), (401, "failed", False)]
)
async def test_api_error_is_classified_with_its_status(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    status: int,
    outcome_status: str,
    retryable: bool,
) -> None:
    repo = git_repo()
    fake_model.add_script([Step.error(status)], cwd=repo)
    outcome = await run_session(claude_provider, agent_spec("worker", repo))
    assert outcome.status == outcome_status
    assert outcome.failure is not None and outcome.failure.kind == FailureKind.API_ERROR
    assert outcome.failure.status == status and outcome.failure.retryable is retryable


async def test_max_turns_is_classified(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script([Step.bash("true")] * 4, cwd=repo)
    outcome = await run_session(claude_provider, agent_spec("worker", repo, max_turns=2))
    assert outcome.status == "failed"
    assert outcome.failure is not None and outcome.failure.kind == FailureKind.MAX_TURNS


@pytest.mark.parametrize("step", [Step.hang_forever(), Step(text="hm", stall_mid_stream=True)])
async def test_silent_model_is_hung_and_the_process_is_killed(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
    step: Step,
) -> None:
    repo = git_repo()
    fake_model.add_script([step], cwd=repo)
    outcome = await run_session(claude_provider, agent_spec("worker", repo, idle_timeout_s=2.0))
    assert outcome.status == "crashed"
    assert outcome.failure is not None and outcome.failure.kind == FailureKind.HUNG
    assert outcome.pid is not None and not is_alive(outcome.pid)


async def test_killed_cli_is_crashed(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script([Step.bash("echo started"), Step(text="late", delay_s=20)], cwd=repo)
    pids: list[int] = []

    def on_event(event: AgentEvent) -> None:
        if isinstance(event, SessionStarted) and event.pid:
            pids.append(event.pid)
        if isinstance(event, ToolResult):  # mid-session: the model is "thinking" now
            os.kill(pids[0], signal.SIGKILL)

    outcome = await run_session(claude_provider, agent_spec("worker", repo), on_event=on_event)
    assert outcome.status == "crashed"
    assert outcome.failure is not None and outcome.failure.kind == FailureKind.CRASHED
    assert outcome.failure.exit_code == -9
    assert not is_alive(pids[0])


async def test_stop_ends_a_running_session(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    fake_model.add_script([Step(text="slow", delay_s=30)], cwd=repo)
    sessions: list[AgentSession] = []
    async with anyio.create_task_group() as tg:
        outcomes = []

        async def run() -> None:
            spec = agent_spec("worker", repo)
            outcomes.append(await run_session(claude_provider, spec, on_start=sessions.append))

        tg.start_soon(run)
        with anyio.fail_after(20):
            while not fake_model.main_requests():
                await anyio.sleep(0.05)
        await sessions[0].stop("user cancelled")
    assert outcomes[0].status == "stopped"
    assert outcomes[0].pid is not None and not is_alive(outcomes[0].pid)


async def test_send_queues_a_message_the_agent_takes_in(
    fake_model: FakeModel,
    claude_provider: ClaudeCodeProvider,
    agent_spec: SpecFactory,
    git_repo: RepoFactory,
) -> None:
    repo = git_repo()
    tools = StoneforgeTools()

    def react(request: object) -> Step:
        asked = "HANDOFF-NOW" in getattr(request, "all_text", "")
        return (
            Step.mcp("handoff", done="a", remaining="b", nextStep="c") if asked else Step.say("?")
        )

    fake_model.add_script([Step.bash("sleep 1"), react, Step.say("Handed off.")], cwd=repo)
    sessions: list[AgentSession] = []

    async def on_event(event: AgentEvent) -> None:
        if isinstance(event, SessionStarted):
            await sessions[0].send("HANDOFF-NOW: please call the handoff tool.")

    outcome = await run_session(
        claude_provider,
        agent_spec("worker", repo, mcp=tools),
        on_start=sessions.append,
        on_event=on_event,
    )
    assert outcome.status == "completed", outcome
    assert [c.tool for c in tools.calls] == ["handoff"]
    assert outcome.last_text == "Handed off."
