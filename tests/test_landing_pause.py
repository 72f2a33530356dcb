"""Landing pauses while the target's checkout cannot follow, says why, and resumes by itself.

The orchestrator runs in this process on a real repository (its steward's check runs are
counted); `sf status` runs as a separate process, as a user types it, and must see the pause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import to_thread
from rich.console import Console

from steward_helpers import GIT_ENV, StewardRig, first_parents, git
from stoneforge.live_view import render_view
from stoneforge.models import MergeStatus
from stoneforge.orchestrator import steward as steward_module
from stoneforge.orchestrator.daemon import LEASE_NAME, Orchestrator
from stoneforge.orchestrator.pause import PAUSED, RESUMED
from stoneforge.service import Service


def sf(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "stoneforge", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV, "COLUMNS": "200"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def status_json(repo: Path) -> dict[str, Any]:
    return json.loads(sf(repo, "status", "--json"))


async def wait_for(predicate, timeout: float = 30.0) -> None:  # noqa: ANN001
    with anyio.fail_after(timeout):
        while not await to_thread.run_sync(predicate):
            await anyio.sleep(0.1)


def pause_kinds(rig: StewardRig) -> list[str]:
    return [e.kind for e in rig.store.events_since(0) if e.kind in (PAUSED, RESUMED)]


async def test_a_dirty_main_checkout_pauses_landing_visibly_and_it_resumes_when_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steward_module, "DIRTY_CHECKOUT_RETRY_S", 0.3)  # many paused rounds
    rig = StewardRig(tmp_path / "repo", files={"a.py": "A = 1\n", "b.py": "B = 1\n"})
    _, mr1 = rig.submit("Add one", {"one.py": "ONE = 1\n"})
    _, mr2 = rig.submit("Add two", {"two.py": "TWO = 2\n"})
    (rig.root / "a.py").write_text("A = 2  # the user is editing\n")
    (rig.root / "b.py").write_text("B = 2  # and here\n")
    orchestrator = Orchestrator(
        rig.root,
        rig.config,
        rig.store,
        provider=rig.provider,
        until_idle=True,  # type: ignore[arg-type]
    )
    reason = f"{rig.root} has uncommitted changes in a.py, b.py"

    async with anyio.create_task_group() as group:
        group.start_soon(orchestrator.run)
        # Another process sees the pause, naming the checkout and the files.
        await wait_for(lambda: status_json(rig.root)["landingPaused"] is not None)
        paused = status_json(rig.root)["landingPaused"]
        assert paused["files"] == ["a.py", "b.py"]
        assert paused["reason"] == reason and paused["checkout"] == str(rig.root)
        human = sf(rig.root, "status")
        assert f"landing paused: {reason}\n" in human
        # The live view of `sf serve` says it too.
        console = Console(width=200, record=True)
        console.print(render_view(orchestrator.view()))
        assert f"landing paused: {reason}" in console.export_text()
        # Paused: nothing checked, nothing landed, however long it waits.
        rounds = 0
        counted = orchestrator.steward.round  # type: ignore[union-attr]

        async def counting() -> bool:
            nonlocal rounds
            rounds += 1
            return await counted()

        orchestrator.steward.round = counting  # type: ignore[union-attr,method-assign]
        await anyio.sleep(1.5)
        assert rounds >= 3  # the steward keeps looking, on its retry timer
        steward = orchestrator.steward
        assert steward is not None and steward.check_runs == 0
        assert {rig.store.get_merge_request(m.id).status for m in (mr1, mr2)} == {
            MergeStatus.PENDING
        }
        assert pause_kinds(rig) == [PAUSED]  # once, not once per round
        git(rig.root, "checkout", "a.py", "b.py")  # the user is done: nobody tells the steward
        with anyio.fail_after(30):
            while (
                orchestrator.steward is not None
                and rig.store.get_merge_request(mr2.id).status != MergeStatus.MERGED
            ):
                await anyio.sleep(0.1)
    assert {rig.store.get_merge_request(m.id).status for m in (mr1, mr2)} == {MergeStatus.MERGED}
    assert len(first_parents(rig.root)) == 1  # one batch, one candidate ...
    assert steward.check_runs == 1  # ... checked once
    assert (rig.root / "one.py").exists() and (rig.root / "two.py").exists()
    assert pause_kinds(rig) == [PAUSED, RESUMED]
    assert any("landing resumed" in line for line in orchestrator.recent)
    rig.close()


def test_status_shows_a_pause_only_while_an_orchestrator_runs(tmp_path: Path) -> None:
    rig = StewardRig(tmp_path / "repo")
    rig.store.record_event(
        PAUSED,
        "steward",
        None,
        {"reason": "/r has uncommitted changes in a.py", "files": ["a.py"], "checkout": "/r"},
    )
    service = Service(rig.root, rig.config, rig.store)
    assert service.status().landing_paused is None  # nobody runs: nothing waits to land
    rig.store.acquire_lease(LEASE_NAME, "token", 20.0)
    pause = service.status().landing_paused
    assert pause is not None and pause.files == ["a.py"] and pause.checkout == "/r"
    assert (
        service.status().wire()["landingPaused"]["reason"] == "/r has uncommitted changes in a.py"
    )
    rig.store.record_event(RESUMED, "steward", None, {"checkout": "/r"})
    assert service.status().landing_paused is None
    rig.store.release_lease(LEASE_NAME, "token")
    rig.close()
