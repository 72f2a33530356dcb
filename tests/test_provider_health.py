"""Provider health on a fake clock: the circuit breaker, AIMD concurrency, credentials; and which
session failures are the provider's fault at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stoneforge.agents import (
    ApiRetry,
    Failure,
    FailureKind,
    FaultKind,
    SessionSpec,
    provider_fault,
)
from stoneforge.agents.provider_faults import ProviderFault
from stoneforge.config import parse_config
from stoneforge.errors import ConfigError
from stoneforge.lsp.changes import changed_payload
from stoneforge.models import Event
from stoneforge.orchestrator.provider_health import DEFAULT_CREDENTIAL, Circuit, ProviderHealth
from stoneforge.orchestrator.provider_sessions import Credentials

OVERLOADED = ProviderFault(FaultKind.OVERLOADED, "API Error: 529", status=529)
RATE_LIMITED = ProviderFault(FaultKind.RATE_LIMITED, "API Error: 429", status=429)
EPOCH = datetime(2026, 5, 1, 0, 40, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def health(clock: Clock, **kw: object) -> ProviderHealth:
    args: dict[str, object] = {"max_concurrent": 4, "backoff_s": 5.0, "backoff_max_s": 20.0}
    return ProviderHealth(
        **{**args, **kw},  # type: ignore[arg-type]
        clock=clock,
        wall=lambda t: EPOCH + timedelta(seconds=t),
    )


def test_an_outage_stops_new_sessions_and_one_probe_at_a_growing_backoff_reopens_them() -> None:
    clock = Clock()
    h = health(clock)
    running = [h.session_started(f"t{n}") for n in range(3)]
    assert h.admit(3, "t3").allowed
    h.session_ended(running[0], OVERLOADED)  # the first fault opens the circuit
    assert h.circuit == Circuit.OPEN
    refused = h.admit(0, "t3")
    assert not refused.allowed and refused.retry_at == 5.0
    assert h.unavailable() is not None
    assert h.unavailable().line == "provider unavailable, next try 00:40:05 (529 overloaded)"
    clock.now = 1.0  # the sessions that ran already fail too: the same outage, no longer wait
    h.session_ended(running[1], OVERLOADED)
    assert h.next_probe_at == 5.0
    clock.now = 5.0
    probe = h.admit(0, "t3")
    assert probe.allowed and probe.probe
    assert not h.admit(1, "t4").allowed  # one probe at a time
    ticket = h.session_started("t3")
    assert ticket.probe
    h.session_ended(ticket, OVERLOADED)  # the probe fails: twice the wait
    assert h.admit(0, "t3").retry_at == 15.0
    clock.now = 15.0
    assert h.admit(0, "t3").probe
    ticket = h.session_started("t3")
    h.session_ended(ticket, OVERLOADED)
    clock.now = 35.0  # 20 s: the cap
    assert h.next_probe_at == 35.0 and h.admit(0, "t3").probe
    ticket = h.session_started("t3")
    h.answered(ticket)  # the first model turn of the probe closes the circuit at once
    assert h.circuit == Circuit.CLOSED and h.unavailable() is None
    assert all(h.admit(n, f"t{n}").allowed for n in range(1, 4))
    assert not h.admit(4, "t9").allowed  # maxConcurrent still holds
    h.session_ended(running[2], None)  # a session from before the outage: nothing changes
    assert h.circuit == Circuit.CLOSED


def test_retry_after_is_honoured_and_a_probe_that_never_ran_is_due_again_at_once() -> None:
    clock = Clock()
    h = health(clock)
    first = h.session_started("t1")
    h.session_ended(first, ProviderFault(FaultKind.SERVER_ERROR, "500", 500, retry_after_s=42.0))
    assert h.admit(0, "t2").retry_at == 42.0  # above the backoff, and above the cap too
    clock.now = 42.0
    assert h.admit(0, "t2").probe
    h.run_ended("t2")  # its worktree failed before any session: no verdict
    assert h.circuit == Circuit.OPEN and h.admit(0, "t3").probe
    fault = provider_fault(
        Failure(kind=FailureKind.API_ERROR, message="API Error: 529 Overloaded", status=529),
        ApiRetry(attempt=2, max_retries=2, delay_s=7.5, status=529),
    )
    assert fault is not None and fault.retry_after_s == 7.5  # the CLI's last retry delay


def test_a_burst_of_429s_halves_concurrency_once_per_round_and_successes_grow_it_back() -> None:
    clock = Clock()
    h = health(clock, max_concurrent=8, backoff_s=1.0)
    burst = [h.session_started(f"t{n}") for n in range(8)]
    clock.now = 1.0
    h.session_ended(burst[0], RATE_LIMITED)
    assert h.limit == 4
    for ticket in burst[1:4]:  # started before the cut: the same burst, no further cut
        h.session_ended(ticket, RATE_LIMITED)
    assert h.limit == 4
    clock.now = 2.0
    assert not h.admit(4, "t9").allowed and h.admit(3, "t9").allowed
    late = h.session_started("t9")
    h.retrying(late, 429, 3.0)  # the CLI's own retry of a 429 counts as well
    assert h.limit == 2
    h.session_ended(late, RATE_LIMITED)  # one cut per session
    assert h.limit == 2
    for ticket in burst[4:]:  # successes of sessions from before the cut do not grow it
        h.answered(ticket)
        h.session_ended(ticket, None)
    assert h.limit == 2
    clock.now = 10.0
    limits = []
    for n in range(8):
        ticket = h.session_started(f"ok{n}")
        h.answered(ticket)
        h.session_ended(ticket, None)
        limits.append(h.limit)
    assert limits == [3, 4, 5, 6, 7, 8, 8, 8]  # one at a time, never above maxConcurrent


def test_sessions_spread_over_credentials_and_a_rate_limited_one_rests() -> None:
    clock = Clock()
    h = health(clock, credentials=["KEY_A", "KEY_B"], backoff_s=2.0)
    a, b = h.session_started("t1"), h.session_started("t2")
    assert {a.credential, b.credential} == {"KEY_A", "KEY_B"}
    limited = a if a.credential == "KEY_A" else b
    h.session_ended(limited, RATE_LIMITED)
    assert [c.name for c in h.resting()] == ["KEY_A"]
    assert h.admit(1, "t3").allowed  # the other carries on
    assert {h.session_started(f"t{n}").credential for n in range(3, 6)} == {"KEY_B"}
    out = ProviderFault(FaultKind.OUT_OF_CREDIT, "credit balance is too low", 400)
    h.session_ended(h.session_started("t6"), out)  # KEY_B is out of credit: rests for the cap
    refused = h.admit(0, "t7")
    assert not refused.allowed and refused.retry_at == 2.0
    assert refused.reason == "KEY_A: 429 rate limited; KEY_B: out of credit"
    assert h.circuit == Circuit.CLOSED  # a credential's trouble is not an outage
    clock.now = 2.0
    assert h.admit(0, "t7").allowed and h.session_started("t7").credential == "KEY_A"


@pytest.mark.parametrize(
    ("failure", "kind", "status"),
    [
        (
            Failure(kind=FailureKind.API_ERROR, message="API Error: 529 x", status=529),
            "overloaded",
            529,
        ),
        (
            Failure(kind=FailureKind.API_ERROR, message="API Error: 502 x", status=502),
            "server_error",
            502,
        ),
        (
            Failure(
                kind=FailureKind.API_ERROR,
                message="API Error: Request rejected (429) · x",
                status=429,
            ),
            "rate_limited",
            429,
        ),
        (
            Failure(
                kind=FailureKind.API_ERROR, message="API Error: Connection refused (ECONNREFUSED)"
            ),
            "unreachable",
            None,
        ),
        (
            Failure(
                kind=FailureKind.API_ERROR, message="Your credit balance is too low", status=400
            ),
            "out_of_credit",
            400,
        ),
        (
            Failure(kind=FailureKind.STARTUP, message="fetch failed: ECONNREFUSED"),
            "unreachable",
            None,
        ),
        (
            Failure(
                kind=FailureKind.API_ERROR, message="API Error: 401 invalid x-api-key", status=401
            ),
            None,
            None,
        ),
        (
            Failure(
                kind=FailureKind.API_ERROR, message="API Error: 400 prompt too long", status=400
            ),
            None,
            None,
        ),
        (Failure(kind=FailureKind.MAX_TURNS, message="max turns"), None, None),
        (Failure(kind=FailureKind.HUNG, message="no events for 600s"), None, None),
        (
            Failure(kind=FailureKind.CRASHED, message="ended without a result (exit code 1)"),
            None,
            None,
        ),
    ],
)
def test_only_the_providers_failures_are_provider_faults(
    failure: Failure, kind: str | None, status: int | None
) -> None:
    fault = provider_fault(failure)
    assert (fault.kind.value if fault else None, fault.status if fault else None) == (kind, status)


def test_the_changed_notification_carries_the_outage_and_its_end() -> None:
    def event(n: int, kind: str, data: dict[str, object]) -> Event:
        return Event(id=n, at=EPOCH, actor="x", kind=kind, entity="provider", data=data)

    line = "provider unavailable, next try 00:41:10 (529 overloaded)"
    down = event(
        1,
        "provider.unavailable",
        {"reason": "529 overloaded", "line": line, "nextTryAt": "2026-05-01T00:41:10+00:00"},
    )
    payload = changed_payload([down])
    assert payload["providerUnavailable"]["line"] == line
    assert payload["providerUnavailable"]["nextTryAt"].startswith("2026-05-01T00:41:10")
    assert (
        changed_payload([down, event(2, "provider.available", {})])["providerUnavailable"] is None
    )
    assert "providerUnavailable" not in changed_payload([event(3, "task.created", {})])


def test_credentials_are_read_by_name_and_only_their_names_are_ever_shown(tmp_path: Path) -> None:
    config = parse_config(
        "agents:\n  credentials: [WORK_API_KEY, {env: TEAM_TOKEN, passAs: CLAUDE_CODE_OAUTH_TOKEN}]\n"
    ).agents.credentials
    with pytest.raises(ConfigError, match="names TEAM_TOKEN, but it is not set"):
        Credentials(config, {"WORK_API_KEY": "sk-ant-api03-work-0123456789"})
    credentials = Credentials(
        config, {"WORK_API_KEY": "sk-ant-api03-work-0123456789", "TEAM_TOKEN": "oauth-0123456789"}
    )
    assert credentials.names == ["WORK_API_KEY", "TEAM_TOKEN"]
    assert "0123456789" not in repr(credentials)
    spec = SessionSpec(cwd=tmp_path, prompt="p", config_dir=tmp_path / "c", env={"A": "1"})
    assert credentials.apply(spec, "WORK_API_KEY").api_key == "sk-ant-api03-work-0123456789"
    token = credentials.apply(spec, "TEAM_TOKEN")
    assert token.api_key is None and token.env == {
        "A": "1",
        "CLAUDE_CODE_OAUTH_TOKEN": "oauth-0123456789",
        "ANTHROPIC_API_KEY": "",  # the CLI would prefer a key it inherited
    }
    assert credentials.apply(spec, DEFAULT_CREDENTIAL) is spec
    with pytest.raises(ConfigError, match="HOME does not look like a credential"):
        parse_config("agents:\n  credentials: [HOME]\n")
