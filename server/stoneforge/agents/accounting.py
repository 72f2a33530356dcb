"""Token accounting for one session, fed by its events (pure, no I/O)."""

from __future__ import annotations

from pydantic import BaseModel

from stoneforge.agents.events import AgentEvent, AssistantTurn, Result, SessionStarted
from stoneforge.agents.pricing import turn_cost


class TokenStats(BaseModel):
    """What the AgentSession row shows live.

    `context_tokens` is the prompt size of the latest turn (input + cache read + cache
    creation), the number compared with ``handoffAtTokens``; the other counts are totals.
    `cost_usd` is priced turn by turn (:mod:`.pricing`) while the session runs, when its model's
    prices are known, and is the CLI's own total once its result arrives.
    """

    context_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    turns: int = 0
    cost_usd: float | None = None

    @property
    def total_input_tokens(self) -> int:
        """All prompt tokens processed, cached or not."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens


class TokenAccountant:
    """Consumes events; :meth:`observe` says whether the stats changed."""

    def __init__(self, model: str | None = None) -> None:
        self._stats = TokenStats()
        #: The model that prices the turns: the spec's, then the one the CLI says it uses.
        self._model = model
        self._estimate: float | None = None
        self._final = False

    @property
    def stats(self) -> TokenStats:
        return self._stats.model_copy()

    def observe(self, event: AgentEvent) -> bool:
        if isinstance(event, SessionStarted):
            self._model = event.model or self._model
            return False
        if isinstance(event, AssistantTurn):
            self._observe_turn(event)
            return True
        if isinstance(event, Result):
            return self._observe_result(event)
        return False

    def _observe_turn(self, turn: AssistantTurn) -> None:
        s, u = self._stats, turn.usage
        s.context_tokens = u.context_tokens
        s.input_tokens += u.input_tokens
        s.output_tokens += u.output_tokens
        s.cache_read_input_tokens += u.cache_read_input_tokens
        s.cache_creation_input_tokens += u.cache_creation_input_tokens
        s.turns += 1
        cost = turn_cost(self._model, u)
        if cost is not None and not self._final:
            self._estimate = (self._estimate or 0.0) + cost
            s.cost_usd = self._estimate

    def _observe_result(self, result: Result) -> bool:
        # The CLI's result totals are cumulative and include turns we may not have seen
        # whole (API retries, sub-agents), so they win where they are larger.
        s, u = self._stats, result.usage
        before = s.model_dump()
        s.input_tokens = max(s.input_tokens, u.input_tokens)
        s.output_tokens = max(s.output_tokens, u.output_tokens)
        s.cache_read_input_tokens = max(s.cache_read_input_tokens, u.cache_read_input_tokens)
        s.cache_creation_input_tokens = max(
            s.cache_creation_input_tokens, u.cache_creation_input_tokens
        )
        if result.total_cost_usd is not None:
            s.cost_usd = result.total_cost_usd
            self._final = True
        return s.model_dump() != before
