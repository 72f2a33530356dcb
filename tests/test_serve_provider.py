"""`sf serve` when the API fails: an outage, a burst of rate limits, a rate-limited credential.

The real orchestrator in a subprocess, the real Claude Code CLI per session, real git; the
scripted endpoint answers 529/429 for a time window or for one key whatever its scripts say.
Every test runs with `maxAttempts: 1`: a single attempt spent on the provider's trouble would end
a task `failed`, so "all merged" is the proof that none was.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import SfRunner, write_config
from serve_helpers import commit_steps, finish_serve, run_serve, start_serve, wait_until
from stoneforge.demo import FakeModel
from stoneforge.demo.recording import key_fingerprint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

KEY_A = "sk-ant-api03-CREDENTIAL-A-0123456789abcdef"
KEY_B = "sk-ant-api03-CREDENTIAL-B-0123456789abcdef"


def configure(repo: Path, extra: str = "", agents: str = "") -> None:
    write_config(
        repo,
        "orchestrator:\n  maxAttempts: 1\n  retryBackoffS: 0.2\n"
        + extra
        + (f"agents:\n{agents}" if agents else "")
        + "merge:\n  checks: []\n",
    )


def tasks(sf: SfRunner, model: FakeModel, count: int) -> list[str]:
    ids = [sf("task", "create", "--title", f"Feature {n}").stdout.strip() for n in range(count)]
    for n, task_id in enumerate(ids):
        model.add_script(
            commit_steps(f"feature_{n}.py", f"VALUE = {n}\n", f"Add feature {n}"),
            marker=f"Stoneforge task {task_id}:",
        )
    return ids


def assert_all_merged_on_one_attempt(sf: SfRunner, ids: list[str]) -> list[dict]:
    shown = [sf("task", "show", task_id, "--json").json() for task_id in ids]
    for task in shown:
        assert (task["status"], task["attempts"]) == ("merged", 1), task
    return shown


def test_an_outage_spends_no_attempt_and_every_task_lands_after_it(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    # The 25 s outage, shortened to 8 s: the same path (sessions fail, the circuit
    # opens, probes fail twice, one succeeds), a third of the time.
    configure(initialised, "  maxConcurrent: 4\n  providerBackoffS: 1\n  providerBackoffMaxS: 4\n")
    ids = tasks(sf, fake_model, 4)
    fake_model.fail(529, for_s=8, after_s=None)  # from the first model request on
    proc = start_serve(initialised, fake_model, "--until-idle")
    seen: list[dict] = []

    def outage_shown() -> bool:
        status = sf("status", "--json").json()
        if status.get("providerUnavailable"):
            seen.append(status["providerUnavailable"])
        return bool(seen)

    shown = wait_until(outage_shown, timeout=60, interval=0.3)
    code, out, err = finish_serve(proc, timeout=300)
    assert shown, out
    assert re.fullmatch(
        r"provider unavailable, (next try \d\d:\d\d:\d\d|probing now) \(529 overloaded\)",
        seen[0]["line"],
    ), seen
    assert code == 0, err
    tasks_shown = assert_all_merged_on_one_attempt(sf, ids)
    failed_sessions = [s for t in tasks_shown for s in t["sessions"] if s["status"] == "crashed"]
    assert failed_sessions and all("529" in s["error"] for s in failed_sessions)
    assert "provider unavailable (529 overloaded): no new sessions" in out
    assert "provider available again" in out
    assert sf("status", "--json").json()["providerUnavailable"] is None


def test_a_burst_of_429s_lowers_concurrency_and_it_grows_back(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(
        initialised, "  maxConcurrent: 4\n  providerBackoffS: 0.5\n  providerBackoffMaxS: 2\n"
    )
    ids = tasks(sf, fake_model, 6)
    fake_model.fail(429, for_s=4, after_s=None)
    code, out, err = run_serve(initialised, fake_model, timeout=300)
    assert code == 0, err
    assert_all_merged_on_one_attempt(sf, ids)
    assert "rate limited: at most 2 sessions at once (was 4)" in out
    assert "sessions succeed again: at most 4 at once" in out
    assert "no new sessions" not in out  # a rate limit throttles; it is not an outage


def test_two_credentials_one_always_rate_limited_all_work_lands_on_the_other(
    initialised: Path, sf: SfRunner, fake_model: FakeModel
) -> None:
    configure(
        initialised,
        "  maxConcurrent: 2\n  providerBackoffS: 0.5\n  providerBackoffMaxS: 4\n",
        agents="  credentials: [SF_TEST_KEY_A, SF_TEST_KEY_B]\n",
    )
    ids = tasks(sf, fake_model, 3)
    fake_model.fail(429, api_key=KEY_A)  # for good
    env = {"SF_TEST_KEY_A": KEY_A, "SF_TEST_KEY_B": KEY_B}
    code, out, err = run_serve(initialised, fake_model, timeout=300, env=env)
    assert code == 0, err
    assert_all_merged_on_one_attempt(sf, ids)
    answered = {r.api_key_fingerprint for r in fake_model.requests if r.status == 200}
    refused = {r.api_key_fingerprint for r in fake_model.requests if r.status == 429}
    assert answered == {key_fingerprint(KEY_B)}
    assert refused == {key_fingerprint(KEY_A)}  # it was tried, and rested
    assert "credential SF_TEST_KEY_A rests until" in out  # the name is shown, never the value
    for key in (KEY_A, KEY_B):
        assert key not in out and key not in err
        for path in (initialised / ".stoneforge").glob("state.db*"):
            assert key.encode() not in path.read_bytes(), path
