"""The branch the merge queue lands on: local, or on a remote that the local branch follows.

`TargetBranch` is what the steward and `sf merge approve` talk to, whichever it is: `tip()` (the
commit candidates are built on, fetched first when remote), `ref` (the ref that names it here),
and `move(new, old)` (the compare-and-swap that lands: `update-ref` locally, an atomic
`--force-with-lease` push to a remote). With a remote, the local branch follows by fast-forward
only and never through a checkout with changes; when it cannot follow, it is simply left behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stoneforge.git.errors import CheckoutDirty, GitLayerError
from stoneforge.git.merge import LandingPlan, is_ancestor, land, land_planned, plan_landing
from stoneforge.git.remote import fetch_branch, push_compare_and_swap, tracking_ref
from stoneforge.git.repo import full_branch_ref, ref_value, resolve_commit

log = logging.getLogger("stoneforge.git.target")


@dataclass(frozen=True)
class TargetBranch:
    repo: Path
    branch: str
    remote: str | None = None

    @property
    def ref(self) -> str:
        """The ref that holds the target's tip in this repository."""
        return tracking_ref(self.remote, self.branch) if self.remote else self.branch

    @property
    def name(self) -> str:
        """How messages name it: `main`, or `origin/main`."""
        return f"{self.remote}/{self.branch}" if self.remote else self.branch

    def tip(self) -> str:
        """The target's tip now (fetched from the remote first, which the local branch follows)."""
        if self.remote is None:
            return resolve_commit(self.repo, self.branch)
        tip = fetch_branch(self.repo, self.remote, self.branch)
        self.follow(tip)
        return tip

    def plan_move(self, new: str, old: str) -> LandingPlan | None:
        """The checks of a local `move` that change nothing (the target at ``old``, ``new`` a
        descendant, every checkout of it able to follow), done ahead; None for a remote, whose
        push is its own check. Raises as `move` does."""
        if self.remote is not None:
            return None
        return plan_landing(self.repo, self.branch, new, old)

    def move(self, new: str, old: str, *, message: str, planned: LandingPlan | None = None) -> None:
        """Land ``new`` if the target is still at ``old``; raise ``TargetMoved`` (someone moved
        it), ``CheckoutDirty`` (local only) or ``PushRefused`` (the remote said no) otherwise.
        ``planned``: what `plan_move` checked for exactly this move, so only the compare-and-swap
        and the checkouts following it are left."""
        if self.remote is None:
            if planned is None or (planned.new, planned.old) != (new, old):
                planned = plan_landing(self.repo, self.branch, new, old)
            land_planned(self.repo, planned, message=message)
            return
        push_compare_and_swap(self.repo, self.remote, self.branch, new, old)
        self.follow(new)

    def follow(self, tip: str) -> bool:
        """Fast-forward the local branch to the remote's ``tip`` when that is safe; True if so."""
        local = ref_value(self.repo, full_branch_ref(self.branch))
        if local is None or local == tip or not is_ancestor(self.repo, local, tip):
            return local == tip
        try:
            land(self.repo, self.branch, tip, local, message=f"stoneforge: follow {self.name}")
        except (CheckoutDirty, GitLayerError) as exc:  # a person is editing: leave it behind
            log.info("local %s does not follow %s yet: %s", self.branch, self.name, exc)
            return False
        return True
