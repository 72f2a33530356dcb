"""Run one session to its end: accounting, live callbacks and a classified outcome.

This is the piece the orchestrator calls. It stays storage-agnostic: `on_update` gets the
token stats after every assistant turn (and at the result), `on_event` every event, and
`on_start` the live session (to `send` a handoff request or `stop` it). Each callback may
be sync or async.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from stoneforge.agents.accounting import TokenAccountant, TokenStats
from stoneforge.agents.events import (
    AgentEvent,
    ApiRetry,
    AssistantTurn,
    Failure,
    FailureKind,
    PermissionDenial,
    PermissionDenied,
    Result,
    SessionStarted,
    Stopped,
)
from stoneforge.agents.provider import AgentProvider, AgentSession, SessionSpec
from stoneforge.agents.provider_faults import ProviderFault, provider_fault

T = TypeVar("T")
Callback = Callable[[T], Awaitable[None] | None]

OutcomeStatus = Literal["completed", "failed", "crashed", "stopped"]
# Failures the orchestrator treats as a crash (recover work, re-dispatch): the process
# died, went silent, or the API failed under it with a status worth retrying.
_CRASH_KINDS = {FailureKind.CRASHED, FailureKind.HUNG, FailureKind.API_ERROR}


@dataclass
class SessionOutcome:
    """How a session ended. `status` uses the AgentSession vocabulary of the design."""

    status: OutcomeStatus
    provider_session_id: str | None = None
    pid: int | None = None
    stats: TokenStats = field(default_factory=TokenStats)
    result: Result | None = None
    failure: Failure | None = None
    permission_denials: list[PermissionDenial] = field(default_factory=list)
    last_text: str = ""
    #: The CLI's last own retry of a failed model request (its delay honours `retry-after`).
    last_retry: ApiRetry | None = None

    @property
    def error(self) -> str | None:
        return self.failure.message if self.failure else None

    @property
    def provider_fault(self) -> ProviderFault | None:
        """Set when the session ended on the provider's fault (an outage, a rate limit)."""
        return provider_fault(self.failure, self.last_retry)


async def _notify(callback: Callback[T] | None, value: T) -> None:
    if callback is None:
        return
    result = callback(value)
    if inspect.isawaitable(result):
        await result


def _merge_denials(live: list[PermissionDenial], final: list[PermissionDenial]) -> None:
    seen = {d.tool_use_id for d in live if d.tool_use_id}
    live.extend(d for d in final if not d.tool_use_id or d.tool_use_id not in seen)


async def run_session(
    provider: AgentProvider,
    spec: SessionSpec,
    *,
    on_update: Callback[TokenStats] | None = None,
    on_event: Callback[AgentEvent] | None = None,
    on_start: Callback[AgentSession] | None = None,
) -> SessionOutcome:
    """Run `spec` until its result, failure or stop; never raises for agent failures."""
    accountant = TokenAccountant(spec.model)
    outcome = SessionOutcome(status="crashed")
    async with provider.open(spec) as session:
        await _notify(on_start, session)
        async for event in session.events():
            await _notify(on_event, event)
            if accountant.observe(event):
                await _notify(on_update, accountant.stats)
            if isinstance(event, SessionStarted):
                outcome.provider_session_id = event.provider_session_id
                outcome.pid = event.pid
            elif isinstance(event, AssistantTurn) and event.text:
                outcome.last_text = event.text
            elif isinstance(event, PermissionDenied):
                outcome.permission_denials.append(event.denial)
            elif isinstance(event, ApiRetry):
                outcome.last_retry = event
            elif isinstance(event, Result):
                outcome.result = event
                outcome.provider_session_id = event.provider_session_id
                _merge_denials(outcome.permission_denials, event.permission_denials)
                if not event.is_error:
                    outcome.status = "completed"
            elif isinstance(event, Failure):
                outcome.failure = event
                crash = event.kind in _CRASH_KINDS and event.retryable
                outcome.status = "crashed" if crash else "failed"
            elif isinstance(event, Stopped):
                outcome.status = "stopped"
        outcome.pid = outcome.pid or session.pid
        outcome.provider_session_id = outcome.provider_session_id or session.provider_session_id
    if outcome.result is None and outcome.failure is None and outcome.status != "stopped":
        outcome.failure = Failure(kind=FailureKind.CRASHED, message="no result from the agent")
    outcome.stats = accountant.stats
    return outcome
