"""Background work: it runs in a thread of its own at a lower priority, the git processes it
starts too, and its caller gets its result or its error as if it had run the work itself."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest_git import isolate_git, make_repo
from steward_helpers import ScriptedSession, StewardRig
from stoneforge import background
from stoneforge.agents import SessionSpec
from stoneforge.background import Foreground, in_background
from stoneforge.git.clone_pool import ClonePool
from stoneforge.git.task_clone import detached_head
from stoneforge.models import TaskStatus
from stoneforge.orchestrator import worker as worker_module
from stoneforge.orchestrator.daemon import Orchestrator


def _nice_of_a_child() -> int:
    out = subprocess.run(["cat", "/proc/self/stat"], capture_output=True, text=True, check=True)
    return int(out.stdout.rsplit(")", 1)[1].split()[16])  # field 19: nice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_a_process_started_in_the_background_runs_at_a_lower_priority() -> None:
    here = _nice_of_a_child()
    assert in_background(_nice_of_a_child, "test-background") > here
    assert _nice_of_a_child() == here  # the caller's own thread is left as it was


def test_the_caller_gets_the_result_or_the_error() -> None:
    assert in_background(lambda: 42, "test-background") == 42

    def fails() -> None:
        raise ValueError("the clean-up failed")

    with pytest.raises(ValueError, match="the clean-up failed"):
        in_background(fails, "test-background")


def test_a_dispatch_mark_ends_once_and_wakes_the_waiting_background_work() -> None:
    marks = Foreground()
    end = marks.begin()
    assert marks.busy()
    worker = threading.Thread(target=marks.wait_idle)
    worker.start()
    worker.join(0.1)
    assert worker.is_alive()  # it waits for the dispatch
    end()
    end()  # a second end changes nothing: the count stays right
    worker.join(5)
    assert not worker.is_alive() and not marks.busy()
    other = marks.begin()
    assert marks.busy()  # the double end() above did not eat this one
    other()


def test_background_work_waits_for_a_dispatch_for_a_moment_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background, "FOREGROUND_MAX_WAIT_S", 0.05)
    marks = Foreground()
    marks.begin()  # a dispatch that never says it is done
    marks.wait_idle()  # returns all the same
    assert marks.busy()


def test_the_pool_brings_clones_to_a_new_tip_only_after_the_dispatch_under_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolate_git(monkeypatch, tmp_path)
    monkeypatch.setattr(background, "FOREGROUND_MAX_WAIT_S", 60.0)
    repo = make_repo(tmp_path, **{"README.md": "hello\n"})
    pool = ClonePool(repo.path, tmp_path / "wt" / ".pool", "main", size=2)
    pool.refill(wait=True)
    old = repo.head("main")
    assert {detached_head(c) for c in pool.ready()} == {old}
    end = background.foreground.begin()
    try:
        new = repo.commit("the target moves", **{"new.txt": "new\n"})
        pool.refill()
        time.sleep(0.5)
        assert {detached_head(c) for c in pool.ready()} == {old}  # it waits for the dispatch
    finally:
        end()
    pool.refill(wait=True)
    assert {detached_head(c) for c in pool.ready()} == {new}
    pool.stop()


class _WritingProvider:
    """An agent that writes one file and ends."""

    name = "stub"

    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[ScriptedSession]:
        (Path(spec.cwd) / "work.txt").write_text("done\n")
        yield ScriptedSession(spec)


async def test_the_dispatcher_marks_a_dispatch_until_its_session_opens_and_leaves_no_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = StewardRig(tmp_path / "repo", checks=[])
    provider = _WritingProvider()
    marked_while_preparing: list[bool] = []
    prepare = worker_module.ensure_task_clone

    def preparing(*args: Any, **kwargs: Any) -> Any:
        marked_while_preparing.append(background.foreground.busy())
        return prepare(*args, **kwargs)

    monkeypatch.setattr(worker_module, "ensure_task_clone", preparing)
    rig.store.create_task("write the work")
    orchestrator = Orchestrator(
        rig.root,
        rig.config,
        rig.store,
        provider=provider,  # type: ignore[arg-type]
        until_idle=True,  # type: ignore[arg-type]
    )
    with anyio.fail_after(120):
        await orchestrator.run()
    assert marked_while_preparing == [True]  # background work waited for the checkout
    assert [t.status for t in rig.store.list_tasks()] == [TaskStatus.MERGED]
    assert not background.foreground.busy()  # the landing's wake-up mark was ended too
    rig.close()
