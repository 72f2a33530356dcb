"""Look-ahead checks (`merge.parallelChecks` > 1): several candidates checked at once.

The queue is cut into groups of `merge.batchSize`, a chain. The first group's candidate is built
on the target's tip; each next group's on the candidate of the group before it, as if that one
lands (a *speculative* candidate). Up to `parallelChecks` candidates are checked at once, each in
a check checkout of its own. A candidate lands only when it is built on the real tip, and it is
exactly the commit that was checked, moved there by the compare-and-swap from its base: when
group k lands, group k+1's candidate (first parent: k's landed commit) is on the real tip and its
result stands without another run. So every first-parent commit of the target is still one
that was checked. What was built on a candidate that does not land is *stale*: it is rebuilt on
the real tip and checked again.

A group that fails is bisected. Its first half is a *suspect*: what follows it is built as if it
fails, so the two halves are checked side by side on the tip; the half that passes lands (a
group checked on the real tip lands as soon as no check ahead of it still runs), the other is
bisected again. The rest of a failed group is known to fail once its first half landed
unchanged (the same tree as the whole), and is split without a run, as in the one-batch queue.

A cancelled task, a merge request taken out of the queue meanwhile, or a target moved by other
hands (`sf merge approve`) invalidates the candidates that contain it and those built on them:
their checks are stopped, and they are rebuilt without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from stoneforge.models import MergeStatus, TaskStatus
from stoneforge.orchestrator.checks import Verdict
from stoneforge.orchestrator.steward.base import Entry, StewardBase

log = logging.getLogger("stoneforge.steward")

#: While candidates are checked, how often to look for a cancelled task or a moved target.
POLL_S = 0.25


@dataclass(eq=False)
class Flight:
    """One candidate checked (or being checked) in a look-ahead slot."""

    entries: list[Entry]
    base: str
    candidate: str
    slot: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    verdict: Verdict | None = None
    error: Exception | None = None
    done: bool = False

    @property
    def ids(self) -> str:
        return ", ".join(e.mr.id for e in self.entries)


@dataclass(eq=False)
class Group:
    """Merge requests checked and landed together: a batch, or a half of a failed one."""

    entries: list[Entry]
    #: The first half of a failed group: the groups after it are built as if it fails.
    suspect: bool = False
    #: (first half's MR ids, base, this group's MR ids): this group is the rest of a group that
    #: failed on that base, so once exactly that first half lands there it is known to fail.
    fails_after: tuple[frozenset[str], str, frozenset[str]] | None = None
    flight: Flight | None = None


def _ids(entries: Sequence[Entry]) -> frozenset[str]:
    return frozenset(e.mr.id for e in entries)


def _halves(group: Group, base: str) -> list[Group]:
    """A failed group's two halves: what follows the first is built as if it fails, what
    follows the second as if it lands (with one bad MR, one of the two holds it)."""
    middle = len(group.entries) // 2
    left, right = group.entries[:middle], group.entries[middle:]
    return [
        Group(left, suspect=True),
        Group(right, fails_after=(_ids(left), base, _ids(right))),
    ]


@dataclass
class _Run:
    """One round's look-ahead state."""

    chain: list[Group]
    seen: set[str]  # MRs that entered the chain this round (none comes back in the same round)
    ladder: list[Entry] = field(default_factory=list)  # conflicted on the real tip
    flights: list[Flight] = field(default_factory=list)  # started and not yet done
    changed: anyio.Event = field(default_factory=anyio.Event)
    halted: bool = False  # landing must wait (the user's checkout): nothing more starts
    refill: bool = True  # False once the queue's next MR is one for a person


class LookaheadMixin(StewardBase):
    """The look-ahead queue: a chain of groups, several candidates checked at once."""

    async def _land_ahead(self, window: list[Entry]) -> None:
        """Land ``window`` (and what joins the queue meanwhile) with look-ahead checks."""
        size = self.config.merge.batchSize
        run = _Run(
            chain=[Group(window[i : i + size]) for i in range(0, len(window), size)],
            seen={e.mr.id for e in window},
        )
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                try:
                    await self._ahead_loop(run, group)
                except Exception as exc:  # re-raised outside the task group: not wrapped
                    error = exc
                finally:
                    for flight in run.flights:
                        flight.scope.cancel()
            if error is not None:
                raise error
            # Stopped early (a dirty checkout, the steward stopping): nothing stays `testing`.
            for chained in run.chain:
                if chained.flight is not None:
                    self._drop_flight(chained, "not landed in this round; checked again")
            for entry in run.ladder:
                if self._stopped:
                    break
                if not await self._blockers_landed(entry):
                    continue  # its blocker did not land: it waits in the queue
                self.current = entry.mr.id
                await self._ladder(entry)
        finally:
            self.current = None

    async def _ahead_loop(self, run: _Run, group: TaskGroup) -> None:
        woke = True  # by an event, not by the poll's timer
        tip = ""
        while True:
            if woke or self.landing_target.remote is None:  # a remote is fetched on events only
                tip = await self._tip()
            await self._plan(run, tip, group, launch=False)  # drop stale and invalid ones first
            ready = self._resolvable(run.chain, tip)
            if ready is not None:
                await self._resolve(run, ready)
                woke = True
                continue
            if woke:
                await self._refill(run)
            if not self._stopped:
                await self._plan(run, tip, group)
            self._expect_landing(tip, self._lands_next(run, tip))
            running = [f for f in run.flights if not f.done]
            if self._stopped or (not running and (run.halted or not run.chain)):
                return
            self._show(run, tip)
            with anyio.move_on_after(POLL_S):
                await run.changed.wait()
            woke = run.changed.is_set()
            run.changed = anyio.Event()

    # -- the chain's bases ---------------------------------------------------------------------

    @staticmethod
    def _assumed_to_land(chained: Group, valid: bool) -> bool | None:
        """Whether the groups after ``chained`` are built on its candidate (True), on its base
        (False), or cannot be built yet (None: its candidate is not known)."""
        flight = chained.flight
        if flight is None or not valid:
            return False if chained.suspect else None
        if flight.done:
            if flight.error is not None or flight.verdict is None:
                return None
            return flight.verdict.ok
        return not chained.suspect

    @staticmethod
    def _lands_next(run: _Run, tip: str) -> str | None:
        """The candidate built on the real tip that lands if its checks pass (or passed)."""
        for chained in run.chain:
            flight = chained.flight
            if flight is None or flight.base != tip:
                continue
            verdict = flight.verdict
            if flight.error is None and (verdict.ok if verdict is not None else not flight.done):
                return flight.candidate
        return None

    @staticmethod
    def _resolvable(chain: list[Group], tip: str) -> Group | None:
        """The first group whose checks are done on the real tip with no check running ahead
        of it, so its verdict stands now. (Groups ahead that are not being checked yet, the
        halves of a failed batch, are built on whatever the tip is then; a dependent was only
        checked on a base that holds its blockers.)"""
        for chained in chain:
            flight = chained.flight
            if flight is None:
                continue
            if not flight.done:
                return None
            if flight.base == tip:
                return chained
        return None

    async def _plan(self, run: _Run, tip: str, group: TaskGroup, *, launch: bool = True) -> None:
        """Drop the candidates that are stale or hold an MR that can no longer land, and (with
        ``launch``) start checking the next groups in the free slots."""
        run.flights = [f for f in run.flights if not f.done]
        busy = {f.slot for f in run.flights}
        free = [s for s in range(self.config.merge.parallelChecks) if s not in busy]
        base, known = tip, True
        ahead: set[str] = set()  # tasks assumed to land below the next group
        for chained in list(run.chain):
            flight = chained.flight
            if flight is not None:
                why = (
                    "checked again on the real tip: the candidate below it did not land as is"
                    if not known or flight.base != base
                    else self._invalid(chained, flight)
                )
                if why is not None:
                    self._drop_flight(chained, why)
                    flight = None
                    if not chained.entries:
                        run.chain.remove(chained)
                        continue
            if flight is None and launch and known and free and not run.halted:
                flight = await self._launch(run, chained, base, tip, ahead, free[0], group)
                if chained not in run.chain:
                    continue
                if flight is not None:
                    free.pop(0)
            lands = self._assumed_to_land(chained, flight is not None)
            if lands is None:
                known = False
            elif lands and flight is not None:
                base = flight.candidate
                ahead |= {e.task.id for e in flight.entries}

    def _invalid(self, chained: Group, flight: Flight) -> str | None:
        """Why ``flight`` can no longer land (an MR moved on, its task cancelled or sent back),
        with those MRs taken out of ``chained``; None while it still may."""
        gone: list[Entry] = []
        for entry in flight.entries:
            mr = self.store.get_merge_request(entry.mr.id)
            task = self.store.get_task(entry.task.id)
            if (
                mr.status != MergeStatus.TESTING
                or mr.candidate_commit != flight.candidate
                or task.status != TaskStatus.REVIEW
                or (mr.attempt is not None and mr.attempt != task.dispatches)
            ):
                gone.append(entry)
        if not gone:
            return None
        names = ", ".join(f"{e.mr.id} ({e.task.id})" for e in gone)
        chained.entries = [e for e in chained.entries if e not in gone]
        return f"{names} left the candidate it was checked in; rebuilt without it"

    def _drop_flight(self, chained: Group, why: str) -> None:
        """Stop ``chained``'s candidate (if it still runs); its MRs go back to `pending`."""
        flight = chained.flight
        if flight is None:
            return
        chained.flight = None
        if not flight.done:
            flight.scope.cancel()
        for entry in flight.entries:
            mr = self.store.get_merge_request(entry.mr.id)
            if mr.status == MergeStatus.TESTING and mr.candidate_commit == flight.candidate:
                self._requeue(entry, why)

    async def _launch(
        self,
        run: _Run,
        chained: Group,
        base: str,
        tip: str,
        ahead: set[str],
        slot: int,
        group: TaskGroup,
    ) -> Flight | None:
        """Build ``chained``'s candidate on ``base`` and start its checks in ``slot``; None
        when it was not started (then ``chained`` may have lost MRs or left the chain)."""
        real = base == tip
        # A dependent is checked only on a base that holds its blockers (or with them).
        kept: list[Entry] = []
        graph = await self._graph()  # read once for the whole group, off the loop
        for entry in chained.entries:
            if not self._blockers_waiting(entry.task.id, ahead | {k.task.id for k in kept}, graph):
                kept.append(entry)
        chained.entries = kept
        if not kept:
            run.chain.remove(chained)
            return None
        stack = await self._stack(base, kept)
        if stack.conflicted:
            bad = {c.task_id for c in stack.conflicted}
            if real:  # a real conflict with the target: up the ladder after this round
                run.ladder.extend(e for e in kept if e.task.id in bad)
            # (on a speculative base it stays queued, for the next round on the real tip)
            chained.entries = [e for e in kept if e.task.id not in bad]
            if not chained.entries:
                run.chain.remove(chained)
            run.changed.set()
            return None
        if stack.commit == stack.base:  # every branch is already in the target
            if real:
                await self._already_on_target(kept)
                run.chain.remove(chained)
            return None
        candidate = await self._candidate(base, stack, kept)
        refused = self._take(kept, candidate)
        if refused is not None:  # it left the queue meanwhile (rejected, sent to review)
            chained.entries = [e for e in kept if e is not refused]
            run.changed.set()
            return None
        flight = Flight(kept, base, candidate, slot)
        chained.flight = flight
        run.flights.append(flight)
        group.start_soon(self._fly, run, flight)
        return flight

    async def _fly(self, run: _Run, flight: Flight) -> None:
        with flight.scope:
            try:
                flight.verdict = await self._verify(
                    flight.candidate,
                    retry=len(flight.entries) == 1,
                    entries=flight.entries,
                    slot=flight.slot,
                )
            except Exception as exc:  # ChecksStopped and the like: the loop raises it
                flight.error = exc
        flight.done = True
        run.changed.set()

    # -- verdicts ------------------------------------------------------------------------------

    async def _resolve(self, run: _Run, chained: Group) -> None:
        """``chained``'s checks on the real tip are done: land it, or record the failure and
        bisect it."""
        flight = chained.flight
        assert flight is not None and flight.done
        if flight.error is not None:
            raise flight.error
        assert flight.verdict is not None
        at = run.chain.index(chained)
        run.chain.remove(chained)
        chained.flight = None
        outcome = await self._after_verdict(
            flight.entries, flight.base, flight.candidate, flight.verdict
        )
        if outcome == "failed" and len(flight.entries) > 1:
            back = [
                e
                for e in flight.entries
                if self.store.get_merge_request(e.mr.id).status == MergeStatus.PENDING
            ]
            if len(back) == len(flight.entries):  # not refused for good (a push refused)
                self.note(f"batch failed its checks; bisecting {len(back)} merge requests")
                # Groups already checked as if this one fails (on its base) keep their place.
                while at < len(run.chain) and self._built_on(run.chain[at], flight.base):
                    at += 1
                run.chain[at:at] = _halves(Group(back), flight.base)
        elif outcome == "landed" and at < len(run.chain):
            after = run.chain[at]
            landed = (_ids(flight.entries), flight.base, _ids(after.entries))
            if after.fails_after == landed and len(after.entries) > 1:
                # The rest of a group that failed on that base, now on the first half's landed
                # commit: the same tree as the whole, known to fail; split without a run.
                self._drop_flight(after, "its batch is bisected further")
                self.note(f"batch failed its checks; bisecting {len(after.entries)} merge requests")
                run.chain[at : at + 1] = _halves(after, flight.candidate)
        elif outcome == "requeued" and self._retry_in is not None:
            run.halted = True  # the user's checkout is in the way: wait, start nothing more
        run.changed.set()

    @staticmethod
    def _built_on(chained: Group, base: str) -> bool:
        return chained.flight is not None and chained.flight.base == base

    # -- the queue joining the chain, and what the live view shows -----------------------------

    async def _refill(self, run: _Run) -> None:
        """Merge requests that joined the queue meanwhile join the chain as a new group while
        it is shorter than the look-ahead (none for a person: they wait for the next round)."""
        if run.halted or not run.refill or len(run.chain) >= self.config.merge.parallelChecks:
            return
        fresh = [e for e in await self.queue() if e.mr.id not in run.seen]
        if not fresh:
            return
        if self._protected_changes(fresh[0]):
            run.refill = False  # its turn comes first, checked alone, in the next round
            return
        joining = [e for e in fresh if not self._protected_changes(e)]
        joining = joining[: self.config.merge.batchSize]
        run.seen |= {e.mr.id for e in joining}
        run.chain.append(Group(joining))

    def _show(self, run: _Run, tip: str) -> None:
        """The merge requests being checked now, and on what, for the live view."""
        on = {f.candidate: f.ids for f in run.flights}
        parts = [
            f"{f.ids} on {self.target if f.base == tip else on.get(f.base, f.base[:10])}"
            for f in run.flights
            if not f.done
        ]
        self.current = "; ".join(parts) or None
