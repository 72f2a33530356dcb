"""Keep an agent session's row in the store current while it runs."""

from __future__ import annotations

from stoneforge.agents.accounting import TokenStats
from stoneforge.store import Store


def record_token_stats(store: Store, session_id: str, stats: TokenStats) -> None:
    """Copy the latest token numbers onto the session row, so viewers see them live."""
    store.update_session(
        session_id,
        context_tokens=stats.context_tokens,
        input_tokens=stats.total_input_tokens,
        output_tokens=stats.output_tokens,
        cost_usd=stats.cost_usd or 0.0,
    )
