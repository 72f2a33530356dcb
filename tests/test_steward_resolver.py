"""The steward's conflict-resolving agent: a crash is retried, a stop is not a verdict.

(A resolver that keeps crashing: tests/test_steward_checks.py.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from steward_helpers import ScriptedSession, StewardRig, StubProvider, union_resolve
from steward_helpers import git as rig_git
from stoneforge.agents import Failure, FailureKind, Result, SessionSpec, SessionStarted
from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.orchestrator.steward import ChecksStopped

SHARED = "line 1\nline 2\nline 3\n"


class _CrashingSession(ScriptedSession):
    """Dies without a result (a kill -9 of the CLI), or resolves like the stub agent."""

    def __init__(self, spec: SessionSpec, crash: bool) -> None:
        self.spec = spec
        self.crash = crash

    provider_session_id = "crashing"

    async def events(self) -> AsyncIterator[object]:
        yield SessionStarted(provider_session_id="crashing")
        if self.crash:
            yield Failure(kind=FailureKind.CRASHED, message="exit code -9", retryable=True)
            return
        for name in rig_git(self.spec.cwd, "diff", "--name-only", "--diff-filter=U").split():
            path = Path(self.spec.cwd) / name
            path.write_text(union_resolve(path.read_text()))
        yield Result(provider_session_id="crashing", is_error=False, subtype="success")


@dataclass
class CrashingProvider(StubProvider):
    """The first ``crashes`` sessions die; later ones resolve by keeping both sides."""

    crashes: int = 1
    opened: list[SessionSpec] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[_CrashingSession]:  # type: ignore[override]
        self.opened.append(spec)
        yield _CrashingSession(spec, crash=len(self.opened) <= self.crashes)


def conflicting_pair(rig: StewardRig):  # noqa: ANN201
    rig.submit("Ours", {"shared.txt": "line 1\nline 2 ours\nline 3\n"})
    return rig.submit("Theirs", {"shared.txt": "line 1\nline 2 theirs\nline 3\n"})


def steward_statuses(rig: StewardRig, task_id: str) -> list[str]:
    return [
        s.status.value
        for s in rig.store.list_sessions(task_id=task_id)
        if s.role.value == "steward"
    ]


async def test_a_crashed_resolver_is_tried_again_and_the_merge_lands(tmp_path: Path) -> None:
    provider = CrashingProvider(crashes=2)
    rig = StewardRig(tmp_path / "repo", provider=provider, files={"shared.txt": SHARED})
    task, mr = conflicting_pair(rig)
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.MERGED
    assert rig.store.get_task(task.id).status == TaskStatus.MERGED
    assert steward_statuses(rig, task.id) == ["crashed", "crashed", "completed"]
    assert [t.title for t in rig.store.list_tasks()] == ["Ours", "Theirs"]  # no fix task
    assert any("the steward agent crashed" in n for n in rig.notes), rig.notes
    rig.close()


async def test_no_resolver_starts_once_the_steward_is_stopping(tmp_path: Path) -> None:
    provider = StubProvider()
    rig = StewardRig(tmp_path / "repo", provider=provider, files={"shared.txt": SHARED})
    task, mr = conflicting_pair(rig)
    steward = rig.make_steward()
    await steward.stop()  # the orchestrator is stopping as the ladder reaches the agent
    with contextlib.suppress(ChecksStopped):  # how a stopped steward's round ends
        await steward.round()
    assert provider.calls == []
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.PENDING
    assert rig.store.get_task(task.id).status == TaskStatus.REVIEW
    assert steward_statuses(rig, task.id) == []
    worktree = steward._worktree_path()
    if worktree.is_dir():  # the half-done merge is undone
        assert rig_git(worktree, "status", "--porcelain") == ""
    rig.close()


class _SneakySession(_CrashingSession):
    """Resolves the conflict, and also rewrites a file that never conflicted."""

    async def events(self) -> AsyncIterator[object]:
        async for event in super().events():
            if isinstance(event, Result):
                (Path(self.spec.cwd) / "README.md").write_text("rewritten by the steward agent\n")
            yield event


@dataclass
class SneakyProvider(StubProvider):
    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[_SneakySession]:  # type: ignore[override]
        yield _SneakySession(spec, crash=False)


async def test_a_resolution_that_changes_files_beyond_the_conflict_is_refused(
    tmp_path: Path,
) -> None:
    rig = StewardRig(tmp_path / "repo", provider=SneakyProvider(), files={"shared.txt": SHARED})
    readme = rig_git(rig.root, "show", "main:README.md")
    task, mr = conflicting_pair(rig)
    await rig.drain()
    assert rig.store.get_merge_request(mr.id).status == MergeStatus.CONFLICT
    assert rig_git(rig.root, "show", "main:README.md") == readme  # nothing of it landed
    assert any("also changed README.md, which did not conflict" in n for n in rig.notes), rig.notes
    rig.close()
