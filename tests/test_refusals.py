"""Refused tool calls become notes on the task (`Task.refusals`), shown by `sf task show`.

The events here are what the Claude Code provider streams (the real CLI's run is in
test_agents_containment.py); the store is a real SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from stoneforge.agents import AssistantTurn, PermissionDenial, PermissionDenied, ToolResult
from stoneforge.agents.events import Result, ToolUse
from stoneforge.orchestrator.refusals import MAX_PER_SESSION, RefusalRecorder
from stoneforge.render import task_detail
from stoneforge.store import Store

KEY = "sk-ant-test-not-a-real-key-1234567890"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db", actor="test") as store:
        yield store


def _call(n: int, name: str, **tool_input: str) -> AssistantTurn:
    return AssistantTurn(
        message_id=f"m{n}", tool_uses=[ToolUse(id=f"u{n}", name=name, input=tool_input)]
    )


def _result(n: int, content: str) -> ToolResult:
    return ToolResult(tool_use_id=f"u{n}", is_error=True, content=content)


def _recorder(store: Store, tmp_path: Path) -> tuple[RefusalRecorder, str, Path]:
    task = store.create_task("Contained")
    checkout = tmp_path / "repo" / ".stoneforge" / "worktrees" / f"{task.id}-contained"
    checkout.mkdir(parents=True)
    env = {"ANTHROPIC_API_KEY": KEY}
    return RefusalRecorder(store, task.id, "s1", checkout, env), task.id, checkout


def test_sandbox_refusals_outside_the_checkout_are_noted_with_what_was_tried(
    store: Store, tmp_path: Path
) -> None:
    recorder, task_id, checkout = _recorder(store, tmp_path)
    repo = tmp_path / "repo"
    events = [
        _call(1, "Bash", command=f"git -C {repo} commit -qm x; echo {KEY}"),
        _result(1, f"fatal: Unable to create '{repo}/.git/index.lock': Read-only file system"),
        _call(2, "Bash", command="echo overwritten > ../../../README.md"),
        _result(2, "/bin/bash: line 1: ../../../README.md: Read-only file system\nexit=1"),
        _call(3, "Write", file_path=str(repo / "README.md"), content="x"),
        _result(3, "EROFS: read-only file system, open"),
        # git names the config relative to the repository it was sent to with -C.
        _call(4, "Bash", command=f"git -C {repo} config core.hooksPath /tmp/h"),
        _result(4, "error: could not lock config file .git/config: Read-only file system"),
        # The same words about its own clone's config (kept read-only) are no escape.
        _call(5, "Bash", command="git config user.name me"),
        _result(5, "error: could not lock config file .git/config: Read-only file system"),
    ]
    for event in events:
        recorder.observe(event)
    refusals = store.get_task(task_id).refusals
    assert [r.tool for r in refusals] == ["Bash", "Bash", "Write", "Bash"]
    assert {r.session_id for r in refusals} == {"s1"}
    first = refusals[0]
    assert first.tried == f"git -C {repo} commit -qm x; echo [REDACTED]"
    assert "Read-only file system" in first.reason and first.paths == [f"{repo}/.git/index.lock"]
    assert refusals[1].paths == ["../../../README.md"]
    assert refusals[2].tried == str(repo / "README.md")
    assert refusals[3].tried.startswith(f"git -C {repo} config") and refusals[3].paths == [
        ".git/config"
    ]
    assert KEY not in store.get_task(task_id).model_dump_json()


def test_denials_are_noted_once_and_failures_inside_the_checkout_are_not(
    store: Store, tmp_path: Path
) -> None:
    recorder, task_id, checkout = _recorder(store, tmp_path)
    denial = PermissionDenial(
        tool_name="Bash",
        tool_use_id="u1",
        tool_input={"command": "git push origin HEAD:main"},
        reason="git push is not allowed: the merge queue lands your branch",
    )
    for event in [
        _call(1, "Bash", command="git push origin HEAD:main"),
        PermissionDenied(denial=denial),
        # Ordinary failures: a script without its x bit, a path of its own, a plain error.
        _call(2, "Bash", command="./run.sh"),
        _result(2, f"/bin/bash: line 1: {checkout}/run.sh: Permission denied"),
        _call(3, "Bash", command="cat missing.txt"),
        _result(3, "cat: missing.txt: No such file or directory"),
        # The CLI lists the same denial again in its result: still one note.
        Result(provider_session_id="p", is_error=False, subtype="success",
               permission_denials=[denial]),
    ]:  # fmt: skip
        recorder.observe(event)
    refusals = store.get_task(task_id).refusals
    assert [(r.tool, r.tried) for r in refusals] == [("Bash", "git push origin HEAD:main")]
    assert "merge queue" in refusals[0].reason
    console = Console(width=200, record=True)
    console.print(task_detail(store.get_task(task_id)))  # what `sf task show` prints
    shown = console.export_text()
    assert "refused" in shown and "Bash: git push origin HEAD:main" in shown


def test_a_session_records_a_bounded_number_of_distinct_refusals(
    store: Store, tmp_path: Path
) -> None:
    recorder, task_id, _ = _recorder(store, tmp_path)
    for n in range(MAX_PER_SESSION + 10):
        command = f"touch /etc/x{n % (MAX_PER_SESSION + 5)}"
        recorder.observe(_call(n, "Bash", command=command))
        recorder.observe(_result(n, f"touch: cannot touch '/etc/x{n}': Read-only file system"))
    refusals = store.get_task(task_id).refusals
    assert len(refusals) == MAX_PER_SESSION
    assert len({r.tried for r in refusals}) == MAX_PER_SESSION
