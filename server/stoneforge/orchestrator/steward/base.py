"""What the steward's parts share: the queue entry, the round's signals and outcomes, and the
state and small helpers every part of the `Steward` reads (its parts are mixins on this base,
composed in the package's `Steward`; they call one another through ``self``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from anyio import to_thread

from stoneforge.agents import AgentProvider, AgentSession
from stoneforge.config import StoneforgeConfig
from stoneforge.git.clone_pool import expect_landing
from stoneforge.git.merge import StackItem
from stoneforge.git.repo import run_git
from stoneforge.git.target import TargetBranch
from stoneforge.graph import DependencyGraph
from stoneforge.models import MergeRequest, Task
from stoneforge.orchestrator.check_procs import CheckRegistry
from stoneforge.orchestrator.pause import PauseState
from stoneforge.store import Fence, Store

Outcome = Literal["landed", "failed", "requeued", "awaiting"]


class ChecksStopped(Exception):  # noqa: N818 - a signal, not an error
    """The steward was stopped while a check ran: the check was killed, the round ends."""


@dataclass(frozen=True)
class ResolverCrashed:
    """The conflict-resolving session did not complete: a crash of ours, not a verdict."""

    reason: str


class ResolverInterrupted(Exception):  # noqa: N818 - a signal, not an error
    """The conflict-resolving agent was stopped with the orchestrator: its rung waits."""


@dataclass
class Entry:
    """One queued merge request with its task."""

    mr: MergeRequest
    task: Task

    @property
    def item(self) -> StackItem:
        return StackItem(task_id=self.task.id, title=self.task.title, branch=self.mr.branch)


class StewardBase:
    """The steward's state (set up by `Steward.__init__`) and the helpers all its parts use."""

    root: Path
    fence: Fence | None
    config: StoneforgeConfig
    store: Store
    provider: AgentProvider
    target: str
    landing_target: TargetBranch
    agent_env: dict[str, str]
    note: Callable[[str], None]
    on_landed: Callable[[], None]
    on_current: Callable[[str | None], None]
    #: Stacked dependents whose agent runs: (task id, "tell" or "stop", text) for the dispatcher.
    on_dependent: Callable[[str, str, str], None]
    check_runs: int
    id: str
    pause: PauseState
    _current: str | None
    _stopped: bool
    _retry_in: float | None
    _said: set[str]
    _stacked: tuple[object, str]
    _checks_registry: CheckRegistry
    _registered: bool
    _check_scopes: set[anyio.CancelScope]
    _resolver_hold: dict[str, tuple[float, int]]
    _protected_seen: dict[tuple[str, str], list[str]]
    _agent_session_id: str | None
    _agent: AgentSession | None
    _reader: Store | None

    # Tunables: the `Steward` reads them from its package's constants when they are used.
    dirty_retry_s: float
    resolver_retries: int
    resolver_hold_s: float
    resolver_hold_max_s: float

    @property
    def current(self) -> str | None:
        """The merge request(s) being checked right now, for the live view and progress."""
        return self._current

    @current.setter
    def current(self, value: str | None) -> None:
        if value != self._current:
            self._current = value
            self.on_current(value)

    def _own_connection(self) -> Store:
        """The steward's own connection, for reads in a worker thread: they neither wait for nor
        hold the lock of the connection the loop shares (with the editor's handler threads)."""
        if self._reader is None:
            self._reader = self.store.sibling()
        return self._reader

    async def _graph(self) -> DependencyGraph:
        """The whole board's dependency graph, read (and built) off the event loop."""
        return await to_thread.run_sync(lambda: self._own_connection().graph())

    def _worktree_path(self) -> Path:
        return self._checks_registry.checkout

    def _expect_landing(self, base: str | None, candidate: str | None) -> None:
        """``candidate`` is checked on the target's tip ``base`` and lands next if it passes
        (None: nothing is): the clone pool prepares checkouts at it for the dependents."""
        expect_landing(self.root, self.config.orchestrator.worktree_dir(self.root), base, candidate)

    async def _tip(self) -> str:
        return await to_thread.run_sync(self.landing_target.tip)

    def _stale_stack(self, entry: Entry) -> list[str]:
        """Overridden by the stacking part: blockers whose work in a stacked branch is stale."""
        return []

    def _branch_names(self) -> set[str]:
        out = run_git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], self.root)
        return set(out.stdout.split())
