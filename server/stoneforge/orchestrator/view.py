"""What the live view of `sf serve` and the editor show of a running orchestrator."""

from __future__ import annotations

from dataclasses import dataclass, field

from stoneforge.orchestrator.worker_base import SlotState


@dataclass
class OrchestratorView:
    """A snapshot for the live view and the editor: slots, queue, recent events."""

    max_concurrent: int
    slots: list[SlotState]
    queued: int
    handoff_at_tokens: int
    recent: list[str] = field(default_factory=list)
    merging: str | None = None
    #: "landing paused: <checkout> has uncommitted changes in a.py" while the steward waits.
    landing_paused: str | None = None
    #: The merge request the steward's review session is reviewing now.
    reviewing: str | None = None
    #: "provider unavailable, next try 00:41:10 (529 overloaded)" while no session may start.
    provider_unavailable: str | None = None
    #: Sessions allowed at once now: below `max_concurrent` after rate limits (AIMD).
    concurrency_limit: int | None = None
    #: Plan and day budgets that stop new dispatch ("day budget reached: ...").
    budget_holds: list[str] = field(default_factory=list)
