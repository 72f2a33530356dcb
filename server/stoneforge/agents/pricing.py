"""What a model turn costs, from its token usage, while a session runs.

The CLI reports a session's cost (`total_cost_usd`) only in its final result; a budget must act
at the turn that crosses it, so each turn's usage is priced here with the published per-token
prices. The CLI's own total replaces this estimate when the session ends. A model not listed
has no estimate (its cost is known at the end of each session; token budgets act at every turn).
"""

from __future__ import annotations

from dataclasses import dataclass

from stoneforge.agents.events import TokenUsage


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, usage: TokenUsage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_input_tokens * self.cache_read
            + usage.cache_creation_input_tokens * self.cache_write
        ) / 1_000_000


#: Model name prefixes, most specific first (the first that matches wins).
_PRICES: tuple[tuple[str, Prices], ...] = (
    ("claude-opus-4-5", Prices(5.0, 25.0, 0.5, 6.25)),
    ("claude-opus-4", Prices(15.0, 75.0, 1.5, 18.75)),
    ("claude-3-opus", Prices(15.0, 75.0, 1.5, 18.75)),
    ("claude-sonnet-4", Prices(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-7-sonnet", Prices(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-5-sonnet", Prices(3.0, 15.0, 0.3, 3.75)),
    ("claude-haiku-4", Prices(1.0, 5.0, 0.1, 1.25)),
    ("claude-3-5-haiku", Prices(0.8, 4.0, 0.08, 1.0)),
)


def prices_for(model: str | None) -> Prices | None:
    """The prices of ``model`` (a full name or a dated one), or None when unknown."""
    if not model:
        return None
    name = model.lower()
    return next((prices for prefix, prices in _PRICES if name.startswith(prefix)), None)


def turn_cost(model: str | None, usage: TokenUsage) -> float | None:
    """The cost of one turn of ``model`` with ``usage``, or None when the model is unknown."""
    prices = prices_for(model)
    return None if prices is None else prices.cost(usage)
