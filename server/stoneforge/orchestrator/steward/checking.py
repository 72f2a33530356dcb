"""What the merge queue is checking now, read from the store and git (so any process can tell).

Every merge request in `testing` names its candidate commit; a candidate's first parent is the
base it was built on: the target's tip, or (look-ahead, `merge.parallelChecks`) the candidate of
the batch being checked before it, on the assumption that that one lands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from stoneforge.git.repo import resolve_commits
from stoneforge.models import CheckingCandidate, MergeStatus
from stoneforge.store import Store


def checking_now(
    root: Path, store: Store, target_ref: Callable[[], str]
) -> list[CheckingCandidate]:
    """The candidates being checked now, in the order they would land (``target_ref``: the
    ref of the target branch here, asked only when something is being checked)."""
    by_candidate: dict[str, list[str]] = {}
    for mr in store.list_merge_requests(MergeStatus.TESTING):
        if mr.candidate_commit:
            by_candidate.setdefault(mr.candidate_commit, []).append(mr.id)
    if not by_candidate:
        return []
    try:
        ref = target_ref()
        found = resolve_commits(root, [ref, *(f"{c}^1" for c in by_candidate)])
    except Exception:  # no target branch or repository any more: the candidates, no bases
        ref, found = "", {}
    tip = found.get(ref)
    out = []
    for candidate, ids in by_candidate.items():
        base = found.get(f"{candidate}^1")
        out.append(
            CheckingCandidate(
                candidate=candidate,
                merge_requests=ids,
                base=base,
                on_target=base is not None and base == tip,
                on_merge_requests=by_candidate.get(base or "", []),
            )
        )
    # In the order they land: on the target first, then each one built on those before.
    ordered = [c for c in out if c.on_target]
    rest = [c for c in out if not c.on_target]
    while rest:
        below = {c.candidate for c in ordered}
        following = [c for c in rest if c.base in below]
        if not following:
            return ordered + rest
        ordered += following
        rest = [c for c in rest if c not in following]
    return ordered
