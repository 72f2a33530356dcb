"""The steward: a merge queue that checks the exact commit that lands.

For the head of the queue it builds the candidate (the merge of the current target tip and the
branch, or for a batch one commit on the target tip that brings in a stack of several branches),
runs the checks in its own worktree on that exact commit, and lands it with a compare-and-swap of
the target ref. The target never holds a commit whose checks did not pass, and every commit on its
first-parent line is one that was checked: a batch lands as a single commit whose second parent is
the stack of its tasks' merges. A failed batch is bisected: the halves are checked on their own and
whatever passes lands. A branch that conflicts goes up a ladder: git's merge, the shared rerere
cache, then a steward agent session; if all fail, a fix task is created.

Landing order: blockers before their dependents (a dependent's merge request waits while a
blocker that can still land has not), then effective priority, then age.

The parts, one job each, are mixins the `Steward` here composes: `queue` (order and what may
land), `gate` (protected paths, the user's checkout), `candidates` (stacks, batches, bisection),
`lookahead` (`merge.parallelChecks`: the next batches checked on top of the one before, at once),
`checks_run` (the checkout and the checks), `land` (landing and approval), `ladder` and
`resolver` (conflicts), `outcomes` (requeue, reject, send back), `forecast` (early detection),
`stacking` (stacked dependents restacked or sent back to waiting; stale stacks held).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import AgentProvider, AgentSession, kill_tree
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import LeaseLostError
from stoneforge.git.blockers import CheckoutBlock
from stoneforge.git.target import TargetBranch
from stoneforge.models import LandingPause
from stoneforge.orchestrator.check_procs import CheckRegistry
from stoneforge.orchestrator.pause import PauseState
from stoneforge.orchestrator.recovery import processes_of_session
from stoneforge.orchestrator.steward.base import (
    ChecksStopped,
    Entry,
    Outcome,
    ResolverCrashed,
    ResolverInterrupted,
)
from stoneforge.orchestrator.steward.candidates import CandidatesMixin, first_parent
from stoneforge.orchestrator.steward.checks_run import ChecksMixin
from stoneforge.orchestrator.steward.forecast import ForecastMixin
from stoneforge.orchestrator.steward.gate import GateMixin, protected
from stoneforge.orchestrator.steward.ladder import LadderMixin
from stoneforge.orchestrator.steward.land import LandMixin
from stoneforge.orchestrator.steward.lookahead import LookaheadMixin
from stoneforge.orchestrator.steward.outcomes import OutcomesMixin
from stoneforge.orchestrator.steward.queue import QueueMixin
from stoneforge.orchestrator.steward.resolver import ResolverMixin
from stoneforge.orchestrator.steward.stacking import StackingMixin
from stoneforge.store import Fence, Store

__all__ = [
    "DIRTY_CHECKOUT_RETRY_S",
    "RESOLVER_HOLD_MAX_S",
    "RESOLVER_HOLD_S",
    "RESOLVER_RETRIES",
    "ChecksStopped",
    "Entry",
    "Outcome",
    "ResolverCrashed",
    "ResolverInterrupted",
    "Steward",
    "first_parent",
    "protected",
]

log = logging.getLogger("stoneforge.steward")

#: When the user's checkout of the target is dirty, look again after this long.
DIRTY_CHECKOUT_RETRY_S = 5.0
#: A conflict-resolving agent session that crashed (or would not start) is tried again this many
#: more times; then its merge request waits, RESOLVER_HOLD_S doubling per time, before the next.
RESOLVER_RETRIES = 2
RESOLVER_HOLD_S = 30.0
RESOLVER_HOLD_MAX_S = 600.0


class Steward(
    StackingMixin,
    QueueMixin,
    GateMixin,
    CandidatesMixin,
    LookaheadMixin,
    ChecksMixin,
    LandMixin,
    LadderMixin,
    ResolverMixin,
    OutcomesMixin,
    ForecastMixin,
):
    """The merge queue: `run()` repeats `round()`, which handles the head of the queue."""

    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        provider: AgentProvider,
        target: str,
        agent_env: dict[str, str],
        note: Callable[[str], None],
        on_landed: Callable[[], None],
        fence: Fence | None = None,
        steward_id: str | None = None,
    ) -> None:
        """``steward_id`` names this steward's own check checkout, `_steward-<id>`, and its run
        files (default: a fresh short id; the orchestrator may pass its lease token)."""
        self.root = root
        #: The orchestrator's lease: every state write and landing proves it still holds it.
        self.fence = fence
        self.config = config
        self.store = store
        self.provider = provider
        self.target = target
        #: Where candidates are built and landed: the local branch, or it on `merge.remote`.
        self.landing_target = TargetBranch(root, target, config.merge.remote)
        self.agent_env = agent_env
        self.note = note
        self.on_landed = on_landed
        self._current: str | None = None
        #: Told whenever the merge request(s) being checked change (None: nothing is checked).
        self.on_current: Callable[[str | None], None] = lambda current: None
        #: Told about stacked dependents whose agent runs (see `stacking`).
        self.on_dependent: Callable[[str, str, str], None] = lambda task_id, action, text: None
        #: Check runs made (each command of `merge.checks` on one commit counts once).
        self.check_runs = 0
        self._wake = anyio.Event()
        self._stopped = False
        self._retry_in: float | None = None
        self._said: set[str] = set()  # notes said once per condition (held MRs)
        #: Whether landing is paused by the target's checkout; told to the store on a change.
        self.pause = PauseState(store, note)
        self._stacked: tuple[object, str] = (None, "")  # (tip and branch heads, stack top)
        self.id = steward_id or uuid.uuid4().hex[:8]
        self._checks_registry = CheckRegistry(
            root, self.config.orchestrator.worktree_dir(root), self.id
        )
        self._registered = False
        #: The checks running now (several with look-ahead): ``stop()`` cancels them all.
        self._check_scopes: set[anyio.CancelScope] = set()
        #: Merge requests whose resolver kept crashing: when to try again, and how often it did.
        self._resolver_hold: dict[str, tuple[float, int]] = {}
        #: Protected paths each MR's branch head changes (asked once per head).
        self._protected_seen: dict[tuple[str, str], list[str]] = {}
        #: The conflict-resolving agent's session while it runs (its row id, then its live CLI).
        self._agent_session_id: str | None = None
        self._agent: AgentSession | None = None
        #: Its own connection for reads in a worker thread (opened there when first needed).
        self._reader: Store | None = None

    # The tunables are this module's constants, read when used (tests shorten them here).
    @property
    def dirty_retry_s(self) -> float:
        return DIRTY_CHECKOUT_RETRY_S

    @property
    def resolver_retries(self) -> int:
        return RESOLVER_RETRIES

    @property
    def resolver_hold_s(self) -> float:
        return RESOLVER_HOLD_S

    @property
    def resolver_hold_max_s(self) -> float:
        return RESOLVER_HOLD_MAX_S

    # -- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop after the current round; a check that runs now is killed at once."""
        self._stopped = True
        for scope in list(self._check_scopes):
            scope.cancel()
        if self._agent is not None:
            await self._agent.stop("stoneforge: the orchestrator is stopping")
        self.wake()

    def kill(self) -> None:
        """A forced stop: kill the conflict-resolving agent's CLI now."""
        self._stopped = True
        if self._agent is not None:
            self._agent.kill()
        if self._agent_session_id is not None:
            for pid in processes_of_session(self.root, self._agent_session_id):
                kill_tree(pid)

    async def run(self) -> None:
        try:
            await self._claim_checkout()  # a dead steward's check stops now, not at our first
            while not self._stopped:
                self._wake = anyio.Event()
                self._retry_in = None
                try:
                    progressed = await self.round()
                except ChecksStopped:
                    break
                except LeaseLostError as exc:
                    # Another orchestrator holds the lease now: this steward must not act again.
                    log.error("steward stopping: %s", exc)
                    self.note(f"steward stopped: {exc}")
                    self._stopped = True
                    break
                except Exception:
                    log.exception("steward round failed")
                    progressed = False
                if progressed and self._retry_in is None:
                    continue
                timeout = self._retry_in if self._retry_in is not None else float("inf")
                with anyio.move_on_after(timeout):
                    await self._wake.wait()
        finally:
            self._registered = False
            self._checks_registry.unregister()
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    async def round(self) -> bool:
        """Process the head of the queue; False when there was nothing to do (or it must wait)."""
        self._recover_testing()
        await self._restack_dependents()  # before the queue reads the branches
        await self._forecast()
        auto = self.config.agents.steward.autoMerge
        batch: list[Entry] = []
        block: CheckoutBlock | None = None
        for _ in range(2):
            # Asked twice when the checkout was just freed: MRs that arrived while it was being
            # looked at join this batch instead of waiting for the next one.
            previous = [e.mr.id for e in batch]
            queue = await self.queue()
            for_human = {e.mr.id for e in queue if self._protected_changes(e)}
            solo = not auto or (bool(queue) and queue[0].mr.id in for_human)
            if solo:  # one at a time, checked and then waiting for a person's approval
                batch = queue[:1]
            else:  # with look-ahead, the next batches too (each checked on the one before)
                batch = [e for e in queue if e.mr.id not in for_human][
                    : self.config.merge.batchSize * self.config.merge.parallelChecks
                ]
            will_land = bool(batch) and (not solo or batch[0].mr.approved_at is not None)
            block = (
                await to_thread.run_sync(functools.partial(self._checkout_blocked, batch))
                if will_land
                else None
            )
            if block is not None or self.pause.current is None or previous:
                break
        self.pause.update(block)  # records steward.paused / steward.resumed when it changes
        if block is not None:
            # Landing would fail: spend no check runs until the user's checkout can follow.
            self._retry_in = DIRTY_CHECKOUT_RETRY_S
            return False
        if not batch:
            return False
        try:
            if solo:
                await self._one_for_approval(batch[0])
            elif self.config.merge.parallelChecks > 1:
                await self._land_ahead(batch)
            else:
                await self._land_batch(batch)
        finally:
            self._expect_landing(None, None)  # what was checked landed, or it did not
        return True

    @property
    def landing_paused(self) -> LandingPause | None:
        """Why landing waits for the user's checkout (None: it does not), for the live view."""
        return self.pause.current
