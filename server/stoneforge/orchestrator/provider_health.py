"""Provider health, kept apart from task health: a circuit breaker, AIMD concurrency, credentials.

Pure logic over an injected clock (no I/O, no asyncio), so every rule is testable with a fake
clock. The dispatcher asks :meth:`ProviderHealth.admit` before it starts a task; each agent
session takes a :class:`Ticket` when it opens (that picks its credential) and reports what the
API answered: a first model turn (:meth:`~ProviderHealth.answered`), the CLI's own retries
(:meth:`~ProviderHealth.retrying`) and how it ended (:meth:`~ProviderHealth.session_ended`).

- **Circuit**: a provider fault (529, 5xx, connection refused) opens it: no new session starts,
  running ones are left alone. After a backoff (`providerBackoffS`, doubling per failed probe up
  to `providerBackoffMaxS`, never before a `retry-after` the CLI reported) one task is let
  through as a probe; its first model answer closes the circuit, its fault opens it again.
- **Concurrency (AIMD)**: a 429 halves the number of sessions that may run at once (once per
  round: only a session started after the last cut cuts again); each session that then succeeds
  gives one slot back, never above `maxConcurrent`.
- **Credentials**: sessions go to the credential with the fewest running sessions among those not
  resting; a rate-limited one rests (backoff or `retry-after`), one out of credit rests for the
  cap, while the others carry on. Only names are known here, never values.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from stoneforge.agents.provider_faults import FaultKind, ProviderFault

Clock = Callable[[], float]
#: The name shown for the CLI's own credentials when `agents.credentials` is empty.
DEFAULT_CREDENTIAL = "the CLI's credentials"


class Circuit(StrEnum):
    CLOSED = "closed"
    OPEN = "open"  # nothing new starts until the probe is due
    PROBING = "probing"  # one probe session runs; nothing else starts


@dataclass
class CredentialState:
    name: str
    running: int = 0
    resting_until: float = 0.0
    resting_until_wall: datetime | None = None
    rested_at: float = float("-inf")  # when its latest rest began
    strikes: int = 0
    reason: str = ""
    used: int = 0  # sessions ever given: the tie-break that spreads them


@dataclass
class Ticket:
    """One session, from open to end, as provider health follows it."""

    id: int
    credential: str
    owner: str
    started_at: float
    probe: bool = False
    answered: bool = False
    cut: bool = False  # this session already halved the concurrency
    ended: bool = False


@dataclass(frozen=True)
class Admission:
    """The dispatcher's answer: start one task now (maybe as the probe), or why not and until
    when (``retry_at``, on the health's clock; None: a running session's end will tell)."""

    allowed: bool
    probe: bool = False
    reason: str | None = None
    retry_at: float | None = None


@dataclass(frozen=True)
class Unavailable:
    """Why no session may start now, and when the next try is (wall clock)."""

    reason: str
    next_try_at: datetime | None

    @property
    def line(self) -> str:
        when = f"next try {self.next_try_at:%H:%M:%S}" if self.next_try_at else "probing now"
        return f"provider unavailable, {when} ({self.reason})"


class ProviderHealth:
    def __init__(
        self,
        *,
        max_concurrent: int,
        credentials: Sequence[str] = (),
        backoff_s: float = 5.0,
        backoff_max_s: float = 300.0,
        clock: Clock = time.monotonic,
        wall: Callable[[float], datetime] | None = None,
        note: Callable[[str], None] = lambda text: None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.limit = max_concurrent
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self._wall = wall
        self.note = note
        self.on_change = on_change
        names = list(credentials) or [DEFAULT_CREDENTIAL]
        self.credentials = {name: CredentialState(name) for name in names}
        self.circuit = Circuit.CLOSED
        self.failures = 0  # provider faults since the circuit last closed
        self.fault: ProviderFault | None = None  # the one that opened it (or the last probe's)
        self.next_probe_at = 0.0
        #: The same moment on the wall clock, fixed when it is set (shown; compared for changes).
        self.next_probe_wall: datetime | None = None
        self.probe_owner: str | None = None
        self.probe_ticket: int | None = None
        self._last_cut_at = float("-inf")
        self._ids = itertools.count(1)

    # -- the dispatcher ------------------------------------------------------------------------

    def admit(self, running: int, owner: str) -> Admission:
        """May ``owner`` (a task) start now, with ``running`` task runs already going?"""
        now = self.clock()
        if self.circuit == Circuit.PROBING:
            return Admission(False, reason=self._outage_reason())
        if self.circuit == Circuit.OPEN and now < self.next_probe_at:
            return Admission(False, reason=self._outage_reason(), retry_at=self.next_probe_at)
        if running >= self.limit:
            return Admission(False)  # full: a run's end wakes the dispatcher
        if self._available(now) is None:
            until = min(c.resting_until for c in self.credentials.values())
            return Admission(False, reason=self._resting_reason(), retry_at=until)
        if self.circuit == Circuit.OPEN:
            self.circuit = Circuit.PROBING
            self.probe_owner = owner
            self.probe_ticket = None
            self.note(f"probing the provider with {owner}")
            return Admission(True, probe=True)
        return Admission(True)

    def run_ended(self, owner: str) -> None:
        """A task run ended. If it was the probe and said nothing about the provider (its
        worktree failed, it was cancelled), the probe is due again at once."""
        if self.circuit == Circuit.PROBING and self.probe_owner == owner:
            self._reopen(self.clock())

    def next_check_at(self) -> float | None:
        """When admission may change by time alone (a probe or a rest ends), if ever."""
        now = self.clock()
        times = [c.resting_until for c in self.credentials.values() if c.resting_until > now]
        if self.circuit == Circuit.OPEN:
            times.append(self.next_probe_at)
        return min(times) if times else None

    # -- sessions ------------------------------------------------------------------------------

    def session_started(self, owner: str) -> Ticket:
        """A session opens for ``owner``: its credential (the least busy of those not resting,
        else the one whose rest ends first) and whether it is the probe."""
        now = self.clock()
        credential = self._available(now) or min(
            self.credentials.values(), key=lambda c: c.resting_until
        )
        credential.running += 1
        credential.used += 1
        ticket = Ticket(next(self._ids), credential.name, owner, now)
        if (
            self.circuit == Circuit.PROBING
            and self.probe_owner == owner
            and self.probe_ticket is None
        ):
            ticket.probe = True
            self.probe_ticket = ticket.id
        return ticket

    def answered(self, ticket: Ticket) -> None:
        """The API answered this session with a model turn: the provider (and the credential)
        works. The probe's first answer closes the circuit."""
        if ticket.answered:
            return
        ticket.answered = True
        credential = self.credentials[ticket.credential]
        credential.strikes = 0
        if ticket.probe and self.circuit == Circuit.PROBING:
            self._close()

    def retrying(self, ticket: Ticket, status: int | None, delay_s: float | None) -> None:
        """The CLI retries a request of this session itself; a 429 is a rate limit all the same."""
        if status == 429:
            self._rate_limited(ticket, delay_s, "429 rate limited")

    def session_ended(self, ticket: Ticket, fault: ProviderFault | None) -> None:
        if ticket.ended:
            return
        ticket.ended = True
        now = self.clock()
        credential = self.credentials[ticket.credential]
        credential.running = max(credential.running - 1, 0)
        is_probe = ticket.probe and self.circuit == Circuit.PROBING
        if fault is None:
            if ticket.answered and ticket.started_at >= self._last_cut_at:
                self._grow()
            if is_probe and ticket.answered:
                self._close()
            elif is_probe:  # it ended without a word from the API (stopped): probe again
                self._reopen(now)
            return
        if fault.kind == FaultKind.RATE_LIMITED:
            self._rate_limited(ticket, fault.retry_after_s, fault.label)
        elif fault.kind == FaultKind.OUT_OF_CREDIT:
            self._rest(credential, ticket, self.backoff_max_s, "out of credit", fault.retry_after_s)
        if fault.credential_only:
            if is_probe:  # it tried a credential, not the provider: probe again
                self._reopen(now)
            return
        # A fault while the circuit is open is a session started before it opened: the same
        # outage, not a new one. Only the probe's fault makes the wait longer.
        if self.circuit == Circuit.CLOSED or is_probe:
            self._open(fault, now)

    # -- what people see -----------------------------------------------------------------------

    def unavailable(self) -> Unavailable | None:
        """Why no new session may start now, if none may (the circuit, or every credential
        resting); None while sessions may start."""
        now = self.clock()
        if self.circuit == Circuit.OPEN:
            return Unavailable(self._outage_reason(), self.next_probe_wall)
        if self.circuit == Circuit.PROBING:
            return Unavailable(self._outage_reason(), None)
        if self._available(now) is None:
            first = min(self.credentials.values(), key=lambda c: c.resting_until)
            return Unavailable(self._resting_reason(), first.resting_until_wall)
        return None

    def resting(self) -> list[CredentialState]:
        now = self.clock()
        return [c for c in self.credentials.values() if c.resting_until > now]

    def wall(self, at: float) -> datetime:
        if self._wall is not None:
            return self._wall(at)
        return datetime.now(UTC) + timedelta(seconds=at - self.clock())

    # -- the rules -----------------------------------------------------------------------------

    def _available(self, now: float) -> CredentialState | None:
        ready = [c for c in self.credentials.values() if c.resting_until <= now]
        return min(ready, key=lambda c: (c.running, c.used)) if ready else None

    def _backoff(self, strikes: int, retry_after_s: float | None) -> float:
        grown = min(self.backoff_s * 2 ** max(strikes - 1, 0), self.backoff_max_s)
        return max(grown, retry_after_s or 0.0)  # never sooner than the API asked

    def _open(self, fault: ProviderFault, now: float) -> None:
        self.failures += 1
        self.fault = fault
        delay = self._backoff(self.failures, fault.retry_after_s)
        self.circuit = Circuit.OPEN
        self.next_probe_at = now + delay
        self.next_probe_wall = self.wall(self.next_probe_at)
        self.probe_owner = None
        self.probe_ticket = None
        self.note(
            f"provider unavailable ({fault.label}): no new sessions; one probe at "
            f"{self.next_probe_wall:%H:%M:%S} (in {delay:.1f}s)"
        )
        self.on_change()

    def _reopen(self, now: float) -> None:
        """The probe said nothing about the provider: the next task is the probe, now."""
        self.circuit = Circuit.OPEN
        self.next_probe_at = now
        self.next_probe_wall = self.wall(now)
        self.probe_owner = None
        self.probe_ticket = None
        self.on_change()

    def _close(self) -> None:
        was = self.fault
        self.circuit = Circuit.CLOSED
        self.failures = 0
        self.fault = None
        self.probe_owner = None
        self.probe_ticket = None
        self.note(
            "provider available again: the probe got an answer"
            + (f" (after {was.label})" if was else "")
        )
        self.on_change()

    def _rate_limited(self, ticket: Ticket, retry_after_s: float | None, label: str) -> None:
        credential = self.credentials[ticket.credential]
        self._rest(credential, ticket, None, label, retry_after_s)
        if not ticket.cut and ticket.started_at >= self._last_cut_at:
            ticket.cut = True
            before, self.limit = self.limit, max(1, self.limit // 2)
            self._last_cut_at = self.clock()
            if before != self.limit:
                self.note(f"rate limited: at most {self.limit} sessions at once (was {before})")
        self.on_change()

    def _rest(
        self,
        credential: CredentialState,
        ticket: Ticket,
        fixed_s: float | None,
        reason: str,
        retry_after_s: float | None,
    ) -> None:
        now = self.clock()
        if ticket.started_at >= credential.rested_at:  # a burst of sessions counts once
            credential.strikes += 1
        delay = fixed_s if fixed_s is not None else self._backoff(credential.strikes, None)
        delay = max(delay, retry_after_s or 0.0)
        until = now + delay
        if until <= credential.resting_until:
            return
        credential.rested_at = now
        credential.resting_until = until
        credential.resting_until_wall = self.wall(until)
        credential.reason = reason
        if len(self.credentials) > 1 or credential.name != DEFAULT_CREDENTIAL:
            self.note(
                f"credential {credential.name} rests until "
                f"{credential.resting_until_wall:%H:%M:%S} ({reason})"
            )

    def _grow(self) -> None:
        if self.limit < self.max_concurrent:
            self.limit += 1
            self.note(f"sessions succeed again: at most {self.limit} at once")
            self.on_change()

    def _outage_reason(self) -> str:
        return self.fault.label if self.fault is not None else "provider error"

    def _resting_reason(self) -> str:
        rests = sorted(self.credentials.values(), key=lambda c: c.resting_until)
        return "; ".join(f"{c.name}: {c.reason}" for c in rests)
