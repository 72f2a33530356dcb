"""A stand-in for the reviewer's agent session, for tests that drive the Reviewer directly.

`ScriptedReviewProvider` answers review sessions (the ones offered `submit_review`) by calling
the session's real MCP tool handler with the next scripted verdict, in the read-only checkout it
was given; every other session goes to the wrapped provider (the conflict ladder's stub).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from steward_helpers import ScriptedSession, git
from stoneforge.agents import Failure, FailureKind, Result, SessionSpec, SessionStarted
from stoneforge.agents.mcp_tools import SUBMIT_REVIEW


@dataclass
class ReviewScript:
    """Verdicts for the next review sessions, in order: approve, request_changes, none (the
    session ends without calling the tool), crash (the CLI dies) or overloaded (the API answers
    529). Empty: approve."""

    verdicts: list[str] = field(default_factory=list)
    seen: list[SessionSpec] = field(default_factory=list)


class _ReviewSession(ScriptedSession):
    def __init__(self, spec: SessionSpec, verdict: str) -> None:
        self.spec = spec
        self.verdict = verdict

    provider_session_id = "stub-review"

    async def events(self) -> AsyncIterator[object]:
        yield SessionStarted(provider_session_id="stub-review")
        if self.verdict == "crash":
            yield Failure(kind=FailureKind.CRASHED, message="exit code -9", retryable=True)
            return
        if self.verdict == "overloaded":  # the provider's fault, not the review's
            yield Failure(
                kind=FailureKind.API_ERROR, message="API Error: 529 Overloaded", retryable=True
            )
            return
        if self.verdict in ("approve", "request_changes"):
            args: dict[str, Any] = {"verdict": self.verdict, "summary": f"stub: {self.verdict}"}
            if self.verdict == "request_changes":
                cwd = self.spec.cwd
                # The change's own diff, as the prompt names it (a stacked branch's starts at
                # its stack base, not at the merge base with main).
                named = re.search(r"`git diff ([0-9a-f]+) ([0-9a-f]+)`", self.spec.prompt)
                base = named.group(1) if named else git(cwd, "merge-base", "main", "HEAD")
                path = git(cwd, "diff", "--name-only", base, "HEAD").split()[0]
                args["comments"] = [{"path": path, "line": 1, "body": f"rework {path}"}]
            assert self.spec.mcp is not None
            reply = await self.spec.mcp.submit_review(args)
            assert not reply["is_error"], reply
        yield Result(provider_session_id="stub-review", is_error=False, subtype="success")


@dataclass
class ScriptedReviewProvider:
    inner: Any
    script: ReviewScript
    name: str = "scripted-review"

    @property
    def calls(self) -> list[SessionSpec]:
        return self.inner.calls

    @contextlib.asynccontextmanager
    async def open(self, spec: SessionSpec) -> AsyncIterator[Any]:
        if spec.mcp is None or SUBMIT_REVIEW not in spec.mcp.enabled:
            async with self.inner.open(spec) as session:
                yield session
            return
        self.script.seen.append(spec)
        verdict = self.script.verdicts.pop(0) if self.script.verdicts else "approve"
        yield _ReviewSession(spec, verdict)
