"""Pure parts of the agent runtime: command policy, accounting, redaction, roles, tools."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stoneforge.agents import (
    AGENT_EVENT_ADAPTER,
    AssistantTurn,
    BashPolicy,
    Failure,
    FailureKind,
    HandoffNote,
    RedactingFilter,
    Redactor,
    Result,
    Role,
    StoneforgeTools,
    TokenAccountant,
    TokenUsage,
    ToolUse,
    build_spec,
    load_role_prompt,
)
from stoneforge.agents.bash_policy import simple_commands
from stoneforge.agents.claude_messages import classify_result
from stoneforge.agents.doctor import check_cli, check_credentials, run_checks
from stoneforge.redact import secret_values

DENIED = [
    "git push",
    "git push origin HEAD:main",
    "cd x && git push",
    "cd x; git push -f",
    "FOO=1 BAR=2 git push",
    "git -C ../other push",
    "git -c core.x=y --no-pager push",
    "/usr/bin/git push",
    "env -i PATH=/bin git push",
    "timeout 30 git push",
    "nohup git push &",
    "sudo -u bob git push",
    "bash -c 'git push origin main'",
    'sh -ec "cd .. && git push"',
    "eval git push",
    'echo "$(git push)"',
    "echo `git push`",
    "(cd /tmp; git push)",
    "true || git push",
    "git status | git push",
    "git status\ngit push",
    "if true; then git push; fi",
    "xargs -n1 git push",
    "git pull",
    "git pull --rebase origin main",
    "git merge feature",
    "git merge --no-ff origin/main",
    "git rebase main",
    "git rebase origin/main",
    "git rebase --onto main HEAD~2",
    "git rebase",
    "git checkout main",
    "git checkout -B main",
    "git checkout origin/main",
    "git checkout main -- file.py",
    "git checkout -",
    "git switch main",
    "git switch -C main",
    "git reset --hard main",
    "git reset --hard origin/main",
    "git reset --hard main~1",
    "git reset --soft refs/heads/main",
    "git branch -f main HEAD",
    "git branch -D main",
    "git update-ref refs/heads/main HEAD",
    "git update-ref --stdin",
    "git worktree add ../m main",
    "git fetch origin main:main",
    "git -c alias.p=push p",
    "git config alias.p push",
    "git commit -m 'x",  # unbalanced quote: refused rather than guessed
]

ALLOWED = [
    "git status",
    "git add -A && git commit -m 'Fix: push; merge main later'",
    'git commit -m "don\'t git push"',
    "git diff main",
    "git log main..HEAD --oneline",
    "git merge-base HEAD main",
    "git merge --abort",
    "git rebase -i HEAD~3",
    "git rebase --continue",
    "git checkout -b feature",
    "git checkout -- file.py",
    "git switch -c feature",
    "git reset --hard",
    "git reset HEAD~1",
    "git reset -- src/main",
    "git branch",
    "git branch new-thing",
    "git fetch origin",
    "git show main:README.md",
    "git stash",
    "echo git push",
    "grep -r 'git push' docs",
    "python -m pytest -q 2>&1 | tail -5",
    "ls > main",
]


@pytest.mark.parametrize("command", DENIED)
def test_policy_refuses_landing_commands(command: str) -> None:
    assert BashPolicy("main").check(command) is not None


@pytest.mark.parametrize("command", ALLOWED)
def test_policy_allows_ordinary_work(command: str) -> None:
    assert BashPolicy("main").check(command) is None


def test_policy_follows_the_configured_target() -> None:
    policy = BashPolicy("trunk")
    assert policy.check("git checkout trunk") and policy.check("git reset --hard origin/trunk")
    assert policy.check("git checkout main") is None
    assert "Bash(git checkout trunk:*)" in policy.disallowed_tool_rules()


def test_simple_commands_splits_like_a_shell() -> None:
    assert list(simple_commands("A=1 git -C d status && ls -l | wc -l; echo $(pwd)")) == [
        ["pwd"],
        ["git", "-C", "d", "status"],
        ["ls", "-l"],
        ["wc", "-l"],
        ["echo", "_"],
    ]


def _turn(i: int, usage: TokenUsage) -> AssistantTurn:
    return AssistantTurn(message_id=f"m{i}", usage=usage)


def test_accountant_keeps_latest_context_and_totals() -> None:
    acc = TokenAccountant()
    assert acc.observe(
        _turn(1, TokenUsage(input_tokens=10, output_tokens=5, cache_read_input_tokens=100))
    )
    assert acc.observe(
        _turn(2, TokenUsage(input_tokens=20, output_tokens=7, cache_creation_input_tokens=30))
    )
    stats = acc.stats
    assert stats.context_tokens == 50 and stats.turns == 2
    assert (stats.input_tokens, stats.output_tokens) == (30, 12)
    assert stats.total_input_tokens == 160
    result = Result(
        provider_session_id="s",
        is_error=False,
        subtype="success",
        total_cost_usd=0.25,
        usage=TokenUsage(input_tokens=40, output_tokens=12),
    )
    assert acc.observe(result)
    assert acc.stats.cost_usd == 0.25 and acc.stats.input_tokens == 40
    assert acc.stats.context_tokens == 50  # a result does not change the context size
    assert not acc.observe(Failure(kind=FailureKind.HUNG, message="x"))


def test_events_round_trip_as_json() -> None:
    turn = AssistantTurn(
        message_id="m",
        text="hi",
        tool_uses=[ToolUse(id="t", name="Bash")],
        usage=TokenUsage(input_tokens=3),
    )
    data = AGENT_EVENT_ADAPTER.dump_python(turn, mode="json")
    assert data["event"] == "assistant_turn"
    assert AGENT_EVENT_ADAPTER.validate_python(data) == turn


@pytest.mark.parametrize(
    ("fields", "kind", "status", "retryable"),
    [
        ({"subtype": "error_max_turns", "terminal_reason": "max_turns"}, "max_turns", None, True),
        ({"api_error_status": 529, "terminal_reason": "api_error"}, "api_error", 529, True),
        ({"api_error_status": 400, "terminal_reason": "api_error"}, "api_error", 400, False),
        ({"subtype": "error_during_execution"}, "error", None, True),
    ],
)
def test_error_results_are_classified(
    fields: dict[str, object], kind: str, status: int | None, retryable: bool
) -> None:
    base: dict[str, object] = {"provider_session_id": "s", "is_error": True, "subtype": "success"}
    failure = classify_result(Result.model_validate({**base, **fields}))
    assert failure is not None
    assert (failure.kind, failure.status, failure.retryable) == (kind, status, retryable)
    assert classify_result(Result(provider_session_id="s", is_error=False, subtype="x")) is None


def test_redactor_hides_known_secrets_and_key_shapes() -> None:
    redactor = Redactor(["supersecretvalue", "short"])
    text = "a supersecretvalue b sk-ant-api03-abcdefghijkl c short"
    assert redactor.text(text) == "a [REDACTED] b [REDACTED] c short"
    assert redactor.obj({"k": ["supersecretvalue"]}) == {"k": ["[REDACTED]"]}
    env = {"ANTHROPIC_API_KEY": "k" * 20, "GITHUB_TOKEN": "t" * 20, "HOME": "/home/someone"}
    assert sorted(secret_values(env)) == ["k" * 20, "t" * 20]


def test_redacting_filter_cleans_log_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("stoneforge.test.redaction")
    caplog.handler.addFilter(RedactingFilter(Redactor(["supersecretvalue"])))
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("key is %s", "supersecretvalue")
    assert "supersecretvalue" not in caplog.text and "[REDACTED]" in caplog.text


def test_role_prompts_ship_and_can_be_overridden(tmp_path: Path) -> None:
    for role in Role:
        assert load_role_prompt(role).startswith("# You are")
    assert "`trunk`" in load_role_prompt(Role.WORKER, target_branch="trunk")
    override = tmp_path / ".stoneforge" / "prompts" / "worker.md"
    override.parent.mkdir(parents=True)
    override.write_text("Custom for $target_branch; costs $5")
    assert load_role_prompt("worker", tmp_path, target_branch="dev") == "Custom for dev; costs $5"
    assert load_role_prompt("steward", tmp_path).startswith("# You are the Stoneforge steward")


def test_role_specs_carry_tools_and_permissions(tmp_path: Path) -> None:
    worker = build_spec("worker", cwd=tmp_path, prompt="p", config_dir=tmp_path / "c")
    assert set(worker.tools or ()) == {"Read", "Write", "Edit", "Glob", "Grep", "Bash"}
    assert "Write" not in worker.allowed_tools and "Edit" not in worker.allowed_tools
    assert "mcp__stoneforge__handoff" in worker.allowed_tools
    assert worker.bash_policy == BashPolicy("main")
    assert "Bash(git push:*)" in worker.disallowed_tools
    director = build_spec(Role.DIRECTOR, cwd=tmp_path, prompt="p", config_dir=tmp_path / "c")
    assert set(director.tools or ()) == {"Read", "Glob", "Grep"} and director.bash_policy is None
    assert director.mcp is not None and director.mcp.tool_names == [
        "mcp__stoneforge__complete_task",
        "mcp__stoneforge__propose_plan",
    ]
    resumed = worker.resumed("abc", "go on")
    assert (resumed.resume, resumed.prompt, resumed.config_dir) == (
        "abc",
        "go on",
        worker.config_dir,
    )


async def test_stoneforge_tools_record_and_call_back() -> None:
    notes: list[HandoffNote] = []
    tools = StoneforgeTools(on_handoff=notes.append)
    reply = await tools.handoff(
        {
            "done": "a",
            "remaining": "b",
            "nextStep": "c",
            "filesTouched": "- x.py\n- y.py",
            "decisions": ["d"],
        }
    )
    assert not reply["is_error"]
    assert notes[0].files_touched == ["x.py", "y.py"] and notes[0].decisions == ["d"]
    answer = await tools.ask_director({"question": "q"})
    assert "No director" in answer["content"][0]["text"]  # the default answer
    await tools.complete_task({"summary": "s"})
    assert [c.tool for c in tools.calls] == ["handoff", "ask_director", "complete_task"]
    assert tools.server()["name"] == "stoneforge"


def test_doctor_checks(tmp_path: Path) -> None:
    cli = check_cli()
    assert cli.ok and "Claude Code" in cli.detail, cli
    missing = check_cli(tmp_path / "no-claude")
    assert not missing.ok
    assert check_credentials({"ANTHROPIC_API_KEY": "sk-secret-value"}).ok
    assert (
        "sk-secret-value" not in check_credentials({"ANTHROPIC_API_KEY": "sk-secret-value"}).detail
    )
    assert check_credentials({}, base_url="http://127.0.0.1:1").ok
    no_creds = check_credentials({})
    assert not no_creds.ok and no_creds.hint
    assert [c.name for c in run_checks(env={})] == ["claude-cli", "credentials"]


async def test_missing_cli_is_a_startup_failure(tmp_path: Path) -> None:
    from stoneforge.agents import ClaudeCodeProvider, run_session

    spec = build_spec("worker", cwd=tmp_path, prompt="p", config_dir=tmp_path / "c")
    outcome = await run_session(ClaudeCodeProvider(cli_path=tmp_path / "no-claude"), spec)
    assert outcome.status == "failed"
    assert outcome.failure is not None and outcome.failure.kind == FailureKind.STARTUP
    assert not outcome.failure.retryable and "no-claude" in outcome.failure.message


def test_session_redacts_secrets_inherited_from_our_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stoneforge.agents import ClaudeCodeProvider

    monkeypatch.setenv("SOME_SERVICE_TOKEN", "inherited-token-value-123")
    spec = build_spec(
        "worker", cwd=tmp_path, prompt="p", config_dir=tmp_path / "c", api_key="spec-key-value-456"
    )
    session = ClaudeCodeProvider().open(spec)
    redact = session._redactor.text
    assert redact("a inherited-token-value-123 b spec-key-value-456") == "a [REDACTED] b [REDACTED]"
