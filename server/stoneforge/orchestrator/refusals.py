"""Tool calls an agent was refused, recorded on its task: an escape attempt is seen, not a crash.

Two kinds of refusal reach a worker session's event stream:
- a live denial (`PermissionDenied`: our Bash guard, or the CLI's own deny rules and permission
  checks), and the denials listed in the session's result;
- a tool that ran but was stopped by the sandbox: a Bash, Write or Edit result saying
  "Read-only file system", "Permission denied" or "Operation not permitted" about a path outside
  the task's checkout (the main checkout, another task's clone, the repository's `.git`).

Each becomes a `task.tool_refused` event on the task, naming the tool, what was tried (the
command or file, redacted and shortened) and why; the store reads them back as
`Task.refusals`, which `sf task show` and the editor's task tree show. A session records at most
`MAX_PER_SESSION` of them, each distinct attempt once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stoneforge.agents import AssistantTurn, PermissionDenial, PermissionDenied, ToolResult
from stoneforge.agents.events import AgentEvent, Result
from stoneforge.redact import Redactor, secret_values
from stoneforge.store import REFUSAL_EVENT, Store

MAX_PER_SESSION = 20
MAX_TEXT = 300
#: What the kernel says when the sandbox (or file permissions) stops a write.
REFUSED_BY_SANDBOX = re.compile(
    r"Read-only file system|Permission denied|Operation not permitted|EROFS|EACCES|EPERM"
)
_FILE_TOOLS = ("Write", "Edit", "MultiEdit", "NotebookEdit")
# An absolute or relative path inside an error line: up to a quote, colon or blank.
_PATH = re.compile(r"(?:^|[\s'\"`(])((?:/|\.\.?/)[^\s'\"`:()]+)")
# Where a command moved to before the line was printed: relative paths in it are from there.
_MOVED_TO = re.compile(r"(?:\bcd|\bgit\s+-C|\bpushd)\s+(['\"]?)([^\s;&|'\"]+)\1")
# A relative path git names in its errors (`could not lock config file .git/config`).
_RELATIVE = re.compile(r"(?:^|[\s'\"`])(\.git/[^\s'\"`:()]+)")
# The shell's own prefix of an error line (`/bin/bash: line 1: `): not a path that was touched.
_SHELL_PREFIX = re.compile(r"^\s*(?:\S*/)?(?:ba|da|z)?sh: (?:line \d+: )?")


class RefusalRecorder:
    """Watches one worker session's events and records the refused tool calls on its task."""

    def __init__(
        self,
        store: Store,
        task_id: str,
        session_id: str,
        checkout: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.session_id = session_id
        self.checkout = Path(os.path.realpath(checkout))
        self._redactor = Redactor([*secret_values(os.environ), *secret_values(env or {})])
        self._calls: dict[str, tuple[str, dict[str, Any]]] = {}  # tool use id -> name, input
        self._recorded: set[str] = set()  # tool use ids
        self._seen: set[tuple[str, str]] = set()  # (tool, what was tried)

    def observe(self, event: AgentEvent) -> None:
        if isinstance(event, AssistantTurn):
            for use in event.tool_uses:
                self._calls[use.id] = (use.name, dict(use.input))
        elif isinstance(event, PermissionDenied):
            self._denied(event.denial)
        elif isinstance(event, Result):
            for denial in event.permission_denials:
                self._denied(denial)
        elif isinstance(event, ToolResult) and event.tool_use_id in self._calls:
            self._tool_result(event)

    def _denied(self, denial: PermissionDenial) -> None:
        name, tool_input = denial.tool_name, denial.tool_input
        if not tool_input and denial.tool_use_id in self._calls:
            name, tool_input = self._calls[denial.tool_use_id]
        reason = denial.reason or "permission denied"
        self._record(denial.tool_use_id, name, tool_input, reason, [])

    def _tool_result(self, result: ToolResult) -> None:
        name, tool_input = self._calls[result.tool_use_id]
        if name != "Bash" and name not in _FILE_TOOLS:
            return
        lines = [line for line in result.content.splitlines() if REFUSED_BY_SANDBOX.search(line)]
        command = str(tool_input.get("command", "")) if name == "Bash" else ""
        bases = [self.checkout, *(self.checkout / d for _, d in _MOVED_TO.findall(command))]
        outside = [p for line in lines for p in self._paths_outside(line, bases)]
        if not outside and name in _FILE_TOOLS and lines:
            target = str(tool_input.get("file_path") or tool_input.get("notebook_path") or "")
            outside = self._paths_outside(f" {target}", [self.checkout])
        if outside:
            reason = next((line for line in lines if any(p in line for p in outside)), lines[0])
            self._record(result.tool_use_id, name, tool_input, reason.strip(), outside)

    def _paths_outside(self, line: str, bases: list[Path]) -> list[str]:
        """Paths named in `line` that lie outside the checkout; a relative one counts when it
        does from any directory the command worked in (`cd`, `git -C`)."""
        found = []
        text = _SHELL_PREFIX.sub(" ", line)
        for raw in [*_PATH.findall(text), *_RELATIVE.findall(text)]:
            for base in [Path("/")] if raw.startswith("/") else bases:
                real = Path(os.path.normpath(base / raw))
                if real != self.checkout and self.checkout not in real.parents:
                    found.append(raw)
                    break
        return list(dict.fromkeys(found))

    def _record(
        self,
        tool_use_id: str | None,
        name: str,
        tool_input: dict[str, Any],
        reason: str,
        paths: list[str],
    ) -> None:
        if tool_use_id and tool_use_id in self._recorded:
            return
        tried = self._short(_what_was_tried(name, tool_input))
        if (name, tried) in self._seen or len(self._seen) >= MAX_PER_SESSION:
            return
        if tool_use_id:
            self._recorded.add(tool_use_id)
        self._seen.add((name, tried))
        self.store.record_event(
            REFUSAL_EVENT,
            "task",
            self.task_id,
            {
                "sessionId": self.session_id,
                "tool": name,
                "tried": tried,
                "reason": self._short(reason),
                "paths": [self._short(p) for p in paths[:5]],
            },
        )

    def _short(self, text: str) -> str:
        text = self._redactor.text(" ".join(text.split()))
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _what_was_tried(name: str, tool_input: dict[str, Any]) -> str:
    if name == "Bash" and "command" in tool_input:
        return str(tool_input["command"])
    for key in ("file_path", "notebook_path", "path", "url"):
        if key in tool_input:
            return str(tool_input[key])
    return json.dumps(tool_input, sort_keys=True, default=str)
