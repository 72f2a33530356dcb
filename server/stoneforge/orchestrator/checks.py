"""Run the project's checks (`merge.checks`) on one exact commit, in the steward's worktree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stoneforge.models import CheckRun
from stoneforge.redact import redact, scrub_env

OUTPUT_TAIL_CHARS = 4000
#: After a timeout (or when a check left a background process holding its output open), how
#: long to wait for the rest of the output once its process group is killed.
DRAIN_S = 5.0


def check_env() -> dict[str, str]:
    """The environment checks run in: ours, without credentials (tests never need them)."""
    return scrub_env()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def run_check(command: str, cwd: Path, timeout_s: float) -> CheckRun:
    """One shell command; its exit code (None on timeout), duration and the tail of its output.

    The command runs in its own process group, and that whole group is killed when it times
    out, so a hung test runner or a `sleep` it started never outlives the check. A command that
    exits but leaves a background process holding its output open counts with its own exit
    code once the timeout passes, and the leftover is killed then.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=check_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    code: int | None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        code = proc.returncode
        suffix = ""
    except subprocess.TimeoutExpired as exc:
        exited = proc.poll()  # bash is done; something it left behind holds the pipe
        _kill_group(proc.pid)
        try:
            out, _ = proc.communicate(timeout=DRAIN_S)
        except subprocess.TimeoutExpired as again:  # escaped the group (setsid), holds the pipe
            out = again.output or exc.output or b""
            proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()
        if exited is not None:
            code = exited
            suffix = "\n[stoneforge: a process the check left running was killed]"
        else:
            code = None
            suffix = f"\n[stoneforge: timed out after {timeout_s:g}s; its processes were killed]"
        output = _text(out) or _text(exc.output)
        return CheckRun(
            command=command,
            exit_code=code,
            duration_s=round(time.monotonic() - started, 3),
            output_tail=redact((output + suffix)[-OUTPUT_TAIL_CHARS:]),
        )
    return CheckRun(
        command=command,
        exit_code=code,
        duration_s=round(time.monotonic() - started, 3),
        output_tail=redact((_text(out) + suffix)[-OUTPUT_TAIL_CHARS:]),
    )


def run_checks(commands: Sequence[str], cwd: Path, timeout_s: float) -> list[CheckRun]:
    """Every command in order; stops at the first failure (the later ones would not count)."""
    runs = []
    for command in commands:
        run = run_check(command, cwd, timeout_s)
        runs.append(run)
        if run.exit_code != 0:
            break
    return runs


def passed(runs: Sequence[CheckRun]) -> bool:
    """Every run exited 0 (no runs: nothing to check, which passes)."""
    return all(run.exit_code == 0 for run in runs)


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


def judge(first: list[CheckRun], retry: list[CheckRun] | None = None) -> Verdict:
    """Combine a run of the checks with its retry (None when there was none)."""
    if passed(first):
        return Verdict(True, list(first))
    if retry is None:
        return Verdict(False, list(first))
    if not passed(retry):
        return Verdict(False, [*first, *retry])
    failed = next(run for run in first if run.exit_code != 0)
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
