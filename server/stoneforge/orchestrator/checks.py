"""Run the project's checks (`merge.checks`) on one exact commit, in a steward's check checkout.

A check runs in a process group of its own. The whole group is killed when the check times out,
when it ends (a background process it left cannot outlive it) and when the caller is cancelled
(the steward stops): stopping never waits for a check to finish.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

from stoneforge.models import CheckRun
from stoneforge.redact import SECRET_ENV_VARS, redact

OUTPUT_TAIL_CHARS = 4000
#: After a timeout (or when a check left a background process holding its output open), how
#: long to wait for the rest of the output once its process group is killed.
DRAIN_S = 5.0
#: Every process of a check inherits this variable (value: the steward's id), so leftovers of a
#: steward that died can be found even when they left its process group.
CHECK_MARKER_ENV = "STONEFORGE_CHECK_OWNER"

#: Told the pid (= process group id) of each check command as soon as it started.
OnStart = Callable[[str, int], None]


def check_env(marker: str | None = None) -> dict[str, str]:
    """The environment checks run in: ours, without API keys (tests never need them)."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
    env.pop("ANTHROPIC_BASE_URL", None)
    if marker is not None:
        env[CHECK_MARKER_ENV] = marker
    return env


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Tail:
    """The last bytes of a stream (a chatty test runner must not fill our memory)."""

    def __init__(self, keep: int = OUTPUT_TAIL_CHARS * 4) -> None:
        self.keep = keep
        self.data = bytearray()

    async def read_all(self, stream: ByteReceiveStream) -> None:
        async for chunk in stream:
            self.data += chunk
            if len(self.data) > 2 * self.keep:
                del self.data[: -self.keep]

    def text(self) -> str:
        return bytes(self.data[-self.keep :]).decode("utf-8", "replace")


async def _finish(proc: Process) -> None:
    """Kill what is left of the check and reap it; runs even when the caller is cancelled."""
    with anyio.CancelScope(shield=True):
        kill_group(proc.pid)
        if proc.stdout is not None:
            await proc.stdout.aclose()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


async def run_check(
    command: str,
    cwd: Path,
    timeout_s: float,
    *,
    marker: str | None = None,
    on_start: OnStart | None = None,
) -> CheckRun:
    """One shell command; its exit code (None on timeout), duration and the tail of its output.

    The command runs in its own process group, and that whole group is killed when it times
    out, so a hung test runner or a `sleep` it started never outlives the check. A command that
    exits but leaves a background process holding its output open counts with its own exit
    code once the timeout passes, and the leftover is killed then. Cancelling the caller kills
    the group at once.
    """
    started = time.monotonic()
    proc = await anyio.open_process(
        ["bash", "-c", command],
        cwd=cwd,
        env=check_env(marker),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail = _Tail()
    suffix = ""
    try:
        if on_start is not None:
            on_start(command, proc.pid)
        assert proc.stdout is not None
        with anyio.move_on_after(timeout_s) as waiting:
            await tail.read_all(proc.stdout)
            await proc.wait()
        code = proc.returncode
        if waiting.cancelled_caught:
            exited = proc.returncode  # bash is done; something it left behind holds the pipe
            kill_group(proc.pid)
            with anyio.move_on_after(DRAIN_S):  # a process that escaped the group may hold it
                await tail.read_all(proc.stdout)
            if exited is not None:
                code = exited
                suffix = "\n[stoneforge: a process the check left running was killed]"
            else:
                code = None
                suffix = (
                    f"\n[stoneforge: timed out after {timeout_s:g}s; its processes were killed]"
                )
    finally:
        await _finish(proc)
    return CheckRun(
        command=command,
        exit_code=code,
        duration_s=round(time.monotonic() - started, 3),
        output_tail=redact((tail.text() + suffix)[-OUTPUT_TAIL_CHARS:]),
    )


async def run_checks(
    commands: Sequence[str],
    cwd: Path,
    timeout_s: float,
    *,
    quarantine: Collection[str] = (),
    marker: str | None = None,
    on_start: OnStart | None = None,
) -> list[CheckRun]:
    """Every command in order; stops at the first failure that counts (the later ones would
    not). A command in ``quarantine`` that fails is marked and the next one runs."""
    runs = []
    for command in commands:
        run = await run_check(command, cwd, timeout_s, marker=marker, on_start=on_start)
        if run.exit_code != 0 and command in quarantine:
            run.quarantined = True
        runs.append(run)
        if blocks(run):
            break
    return runs


def blocks(run: CheckRun) -> bool:
    """This run failed and its failure counts (its command is not quarantined)."""
    return run.exit_code != 0 and not run.quarantined


def passed(runs: Sequence[CheckRun]) -> bool:
    """No run failed, quarantined ones aside (no runs: nothing to check, which passes)."""
    return not any(blocks(run) for run in runs)


@dataclass
class Verdict:
    """The judgement on one commit: whether it passed, and the runs to record on the MR.

    With a retry, ``runs`` holds the runs that decided: on a pass after a failure, the retry's
    runs with the command that failed first marked ``flaky`` (its output tail shows the first
    failure, then the retry); on a repeated failure, the first runs followed by the retry's.
    """

    ok: bool
    runs: list[CheckRun] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)  # commands that failed once, then passed

    @property
    def quarantined(self) -> list[CheckRun]:
        """Runs that failed without blocking: their commands are in `merge.quarantine`."""
        return [run for run in self.runs if run.quarantined]


def judge(first: list[CheckRun], retry: list[CheckRun] | None = None) -> Verdict:
    """Combine a run of the checks with its retry (None when there was none)."""
    if passed(first):
        return Verdict(True, list(first))
    if retry is None:
        return Verdict(False, list(first))
    if not passed(retry):
        return Verdict(False, [*first, *retry])
    failed = next(run for run in first if blocks(run))
    runs = [run.model_copy() for run in retry]
    for run in runs:
        if run.command == failed.command:
            run.flaky = True
            first_tail = failed.output_tail[-(OUTPUT_TAIL_CHARS // 2) :]
            run.output_tail = (
                f"[stoneforge: failed on the first run (exit {failed.exit_code}) and passed on "
                f"the retry; the first run's output:]\n{first_tail}\n[the retry's output:]\n"
                + run.output_tail[-(OUTPUT_TAIL_CHARS // 2) :]
            )
    return Verdict(True, runs, flaky=[failed.command])
