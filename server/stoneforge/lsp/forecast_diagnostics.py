"""Forecast conflicts as warnings on the user's open files.

When the forecast predicts that an agent's branch will conflict (with the target or with another
agent's branch) in a file the user has open, the lines involved get a warning naming the task, so
the user sees the collision coming before anyone merges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types

from stoneforge.git.conflicts import LineRange
from stoneforge.git.forecast import Forecast, ForecastPair
from stoneforge.service import Service

log = logging.getLogger("stoneforge.lsp.forecast")

SOURCE = "stoneforge"
FORECAST_CODE = "forecast-conflict"


@dataclass(frozen=True)
class Warning_:
    path: str
    lines: LineRange
    message: str


def warnings_from_forecast(forecast: Forecast, titles: dict[str, str]) -> list[Warning_]:
    """Per conflicting file, the target-side lines involved and who collides there."""
    return warnings_from_pairs(forecast.target, forecast.conflicts, titles)


def pairs_from_event(data: dict[str, Any]) -> tuple[str, list[ForecastPair]] | None:
    """(target, conflicting pairs) of a steward's `forecast.updated` event; None when the event
    does not carry them (a steward older than the pairs in its event)."""
    target, pairs = data.get("target"), data.get("pairs")
    if not isinstance(target, str) or not isinstance(pairs, list):
        return None
    return target, [
        ForecastPair.model_validate({**pair, "oursCommit": "", "theirsCommit": ""})
        for pair in pairs
    ]


def warnings_from_pairs(
    target: str, conflicts: list[ForecastPair], titles: dict[str, str]
) -> list[Warning_]:
    found: list[Warning_] = []
    for pair in conflicts:
        for conflicted in pair.files:
            for hunk in conflicted.hunks:
                lines = hunk.ours if pair.ours == target else (hunk.ours or hunk.merged)
                if lines is None:
                    continue
                if pair.ours == target:
                    who = _name(pair.theirs, titles)
                    message = (
                        f"{who} also changes these lines; merging it into {target} will conflict"
                    )
                else:
                    message = (
                        f"{_name(pair.ours, titles)} and {_name(pair.theirs, titles)} both change "
                        "these lines; merging both will conflict"
                    )
                found.append(Warning_(conflicted.path, lines, message))
    return found


def _name(label: str, titles: dict[str, str]) -> str:
    title = titles.get(label)
    return f"task {label} ({title})" if title else f"task {label}"


class ForecastDiagnostics:
    """Keeps the latest forecast's warnings, keyed by repository-relative path."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._by_path: dict[str, list[Warning_]] = {}

    def refresh(self) -> None:
        """Recompute the forecast (blocking: call from a worker thread)."""
        try:
            branches = self.service.active_branches()
            if not branches:
                found: list[Warning_] = []
            else:
                found = warnings_from_forecast(self.service.forecast(), self._titles(branches))
        except Exception:
            log.exception("forecast for diagnostics failed")
            return
        self._keep(found)

    def use_event(self, data: dict[str, Any]) -> bool:
        """Take the steward's forecast from its `forecast.updated` event instead of forecasting
        again; False when the event lacks the pairs (then :meth:`refresh`)."""
        try:
            parsed = pairs_from_event(data)
            if parsed is None:
                return False
            target, pairs = parsed
            labels = {label for p in pairs for label in (p.ours, p.theirs)} - {target}
            self._keep(warnings_from_pairs(target, pairs, self._titles(labels)))
        except Exception:
            log.exception("forecast event for diagnostics unreadable")
            return False
        return True

    def _titles(self, task_ids: Iterable[str]) -> dict[str, str]:
        _, rows = self.service.store.lean_tasks(list(task_ids))
        return {row["id"]: row["title"] for row in rows}

    def _keep(self, found: list[Warning_]) -> None:
        by_path: dict[str, list[Warning_]] = {}
        for warning in found:
            by_path.setdefault(warning.path, []).append(warning)
        with self._lock:
            self._by_path = by_path

    def for_document(self, uri: str, text: str) -> list[types.Diagnostic]:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            return []
        try:
            relative = Path(unquote(parsed.path)).resolve().relative_to(self.service.root)
        except ValueError:
            return []
        with self._lock:
            warnings = list(self._by_path.get(relative.as_posix(), []))
        line_count = max(len(text.splitlines()), 1)
        diagnostics = []
        for warning in warnings:
            first = min(max(warning.lines.start - 1, 0), line_count - 1)
            last = min(max(warning.lines.end - 1, first), line_count - 1)
            diagnostics.append(
                types.Diagnostic(
                    range=types.Range(
                        start=types.Position(line=first, character=0),
                        end=types.Position(line=last + 1, character=0)
                        if last + 1 < line_count
                        else types.Position(line=last, character=10_000),
                    ),
                    message=warning.message,
                    severity=types.DiagnosticSeverity.Warning,
                    source=SOURCE,
                    code=FORECAST_CODE,
                )
            )
        return diagnostics
