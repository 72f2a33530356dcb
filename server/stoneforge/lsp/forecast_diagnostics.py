"""Forecast conflicts as warnings on the user's open files.

When the forecast predicts that an agent's branch will conflict (with the target or with another
agent's branch) in a file the user has open, the lines involved get a warning naming the task, so
the user sees the collision coming before anyone merges.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types

from stoneforge.git.conflicts import LineRange
from stoneforge.git.forecast import Forecast
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
    target = forecast.target
    found: list[Warning_] = []
    for pair in forecast.conflicts:
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
                titles = {t: self.service.get_task(t).title for t in branches}
                found = warnings_from_forecast(self.service.forecast(), titles)
        except Exception:
            log.exception("forecast for diagnostics failed")
            return
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
