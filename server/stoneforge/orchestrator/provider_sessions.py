"""Agent sessions as provider health sees them, and the credentials they run with.

:class:`TrackedProvider` wraps the agent provider the orchestrator hands to its worker runs and
its steward: every session it opens takes a :class:`~.provider_health.Ticket` (which picks its
credential), and what the API answers on the way (a model turn, the CLI's own retries, a fault
at the end) goes to :class:`~.provider_health.ProviderHealth`. The session itself is passed
through untouched: callers see the same events.

:class:`Credentials` holds the values of `agents.credentials` (read from the environment once)
and is the only place they are put into a session's spec. Nothing here logs or shows a value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from stoneforge.agents import (
    AgentEvent,
    AgentProvider,
    AgentSession,
    ApiRetry,
    AssistantTurn,
    Failure,
    Result,
    SessionSpec,
    provider_fault,
)
from stoneforge.config import CredentialConfig
from stoneforge.errors import ConfigError
from stoneforge.orchestrator.provider_health import ProviderHealth, Ticket


class Credentials:
    """`agents.credentials`: names to values, read once from ``environ``."""

    def __init__(self, configs: Sequence[CredentialConfig], environ: Mapping[str, str]) -> None:
        missing = [c.env for c in configs if not environ.get(c.env)]
        if missing:
            raise ConfigError(
                f"agents.credentials names {', '.join(missing)}, but "
                f"{'it is' if len(missing) == 1 else 'they are'} not set (or empty) in the "
                "environment of this process; export it, or remove it from the list"
            )
        self._values = {c.env: (c.passAs, environ[c.env]) for c in configs}

    @property
    def names(self) -> list[str]:
        return list(self._values)

    def __repr__(self) -> str:  # names only, ever
        return f"Credentials({self.names})"

    def apply(self, spec: SessionSpec, name: str) -> SessionSpec:
        """``spec`` running on credential ``name`` (unchanged for the CLI's own credentials)."""
        if name not in self._values:
            return spec
        pass_as, value = self._values[name]
        if pass_as == "ANTHROPIC_API_KEY":
            return dataclasses.replace(spec, api_key=value)
        # A token: and no API key, which the CLI would otherwise prefer to it.
        env = {**spec.env, pass_as: value, "ANTHROPIC_API_KEY": ""}
        return dataclasses.replace(spec, api_key=None, env=env)


class TrackedSession:
    """An :class:`AgentSession` whose events also tell provider health what the API did."""

    def __init__(self, session: AgentSession, health: ProviderHealth, ticket: Ticket) -> None:
        self._session = session
        self._health = health
        self.ticket = ticket
        self.failure: Failure | None = None
        self.last_retry: ApiRetry | None = None

    @property
    def provider_session_id(self) -> str | None:
        return self._session.provider_session_id

    @property
    def pid(self) -> int | None:
        return self._session.pid

    async def events(self) -> AsyncIterator[AgentEvent]:
        async for event in self._session.events():
            if isinstance(event, AssistantTurn) or (
                isinstance(event, Result) and not event.is_error
            ):
                self._health.answered(self.ticket)
            elif isinstance(event, ApiRetry):
                self.last_retry = event
                self._health.retrying(self.ticket, event.status, event.delay_s)
            elif isinstance(event, Failure):
                self.failure = event
            yield event

    async def send(self, text: str) -> None:
        await self._session.send(text)

    async def stop(self, reason: str = "") -> None:
        await self._session.stop(reason)

    def kill(self) -> None:
        self._session.kill()


class TrackedProvider:
    """The orchestrator's provider: sessions of ``owner`` (a task id, or the steward)."""

    def __init__(
        self,
        inner: AgentProvider,
        health: ProviderHealth,
        credentials: Credentials,
        owner: str,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.health = health
        self.credentials = credentials
        self.owner = owner

    def for_owner(self, owner: str) -> TrackedProvider:
        return TrackedProvider(self.inner, self.health, self.credentials, owner)

    def __getattr__(self, name: str) -> object:
        # Anything else (the sandbox status, the CLI path) is the real provider's.
        return getattr(self.inner, name)

    def open(self, spec: SessionSpec) -> AbstractAsyncContextManager[AgentSession]:
        return self._open(spec)

    @asynccontextmanager
    async def _open(self, spec: SessionSpec) -> AsyncIterator[AgentSession]:
        ticket = self.health.session_started(self.owner)
        tracked: TrackedSession | None = None
        try:
            async with self.inner.open(self.credentials.apply(spec, ticket.credential)) as inner:
                tracked = TrackedSession(inner, self.health, ticket)
                yield tracked
        finally:
            fault = None
            if tracked is not None:
                fault = provider_fault(tracked.failure, tracked.last_retry)
            self.health.session_ended(ticket, fault)
