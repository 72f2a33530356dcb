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
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio

from stoneforge.models import CheckRun
from stoneforge.redact import redact, scrub_env

OUTPUT_TAIL_CHARS = 4000
#: Every process of a check inherits this variable (value: the steward's id), so leftovers of a
#: steward that died can be found even when they left its process group.
CHECK_MARKER_ENV = "STONEFORGE_CHECK_OWNER"

#: Told the pid (= process group id) of each check command as soon as it started.
OnStart = Callable[[str, int], None]


def check_env(marker: str | None = None) -> dict[str, str]:
    """The environment checks run in: ours, without credentials (tests never need them)."""
    env = scrub_env()
    env.pop("ANTHROPIC_BASE_URL", None)
    if marker is not None:
        env[CHECK_MARKER_ENV] = marker
    return env


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(output: BinaryIO) -> str:
    """The last part of a check's output file (a chatty test runner may write megabytes)."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_TAIL_CHARS * 4))
    return output.read().decode("utf-8", "replace")


async def run_check(
    command: str,
    cwd: Path,
    timeout_s: float,
    *,
    marker: str | None = None,
    on_start: OnStart | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> CheckRun:
    """One shell command; its exit code (None on timeout), duration and the tail of its output.

    The command runs in its own process group, and that whole group is killed when it ends or
    times out, so a hung test runner or a `sleep` it started never outlives the check.
    Cancelling the caller kills the group at once. Output goes to an unlinked temporary file,
    not a pipe: a background process that keeps it open cannot hold the check up.
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:
        proc = await anyio.open_process(
            ["bash", "-c", command],
            cwd=cwd,
            env={**check_env(marker), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        suffix = ""
        try:
            if on_start is not None:
                on_start(command, proc.pid)
            with anyio.move_on_after(timeout_s) as waiting:
                await proc.wait()
            code = None if waiting.cancelled_caught else proc.returncode
            if code is None:
                suffix = (
                    f"\n[stoneforge: timed out after {timeout_s:g}s; its processes were killed]"
                )
            elif _group_alive(proc.pid):
                suffix = "\n[stoneforge: a process the check left running was killed]"
        finally:
            with anyio.CancelScope(shield=True):  # also when cancelled: kill, then reap
                kill_group(proc.pid)
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                await proc.wait()
        text = _tail(output)
    return CheckRun(
        command=command,
        exit_code=code,
        duration_s=round(time.monotonic() - started, 3),
        output_tail=redact((text + suffix)[-OUTPUT_TAIL_CHARS:]),
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
