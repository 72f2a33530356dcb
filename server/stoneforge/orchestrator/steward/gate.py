"""The gate before landing: merge requests that change protected paths wait for a person's
approval (checked one at a time), and a checkout of the target that the landing would have to
overwrite pauses landing before any check runs."""

from __future__ import annotations

from collections.abc import Sequence

from stoneforge.git.blockers import CheckoutBlock, checkout_block
from stoneforge.git.merge import build_stack
from stoneforge.git.repo import resolve_commit, run_git
from stoneforge.git.worktrees import list_worktrees
from stoneforge.orchestrator.steward.base import Entry, StewardBase


class GateMixin(StewardBase):
    """Protected paths (a person approves) and the user's checkout of the target."""

    def _protected_changes(self, entry: Entry) -> list[str]:
        """Paths under `merge.protectedPaths` that ``entry``'s branch changes (none once a person
        approved it). The steward's checks are always the target's config, never the branch's."""
        if entry.mr.approved_at is not None or not self.config.merge.protectedPaths:
            return []
        head = resolve_commit(self.root, entry.mr.branch)
        key = (entry.mr.id, head)
        if key not in self._protected_seen:
            # The remote's tracking ref exists once fetched; before that, the local target.
            target = self.landing_target.ref
            if run_git(
                ["rev-parse", "--verify", "--quiet", target], self.root, check=False
            ).returncode:
                target = self.target
            changed = run_git(
                ["diff", "--name-only", "--no-renames", f"{target}...{head}"], self.root
            ).stdout.split()
            self._protected_seen[key] = [
                path for path in changed if protected(path, self.config.merge.protectedPaths)
            ]
        return self._protected_seen[key]

    async def _one_for_approval(self, entry: Entry) -> None:
        """Check one MR on the current tip: it then waits for a human, or lands if approved."""
        self.current = entry.mr.id
        try:
            base = await self._tip()
            stack = await self._stack(base, [entry])
            if stack.conflicted:
                await self._ladder(entry)
            elif stack.commit == base:
                await self._already_on_target([entry])
            else:
                await self._check_and_land([entry], base, stack.commit)
        finally:
            self.current = None

    def _checkout_blocked(self, batch: Sequence[Entry]) -> CheckoutBlock | None:
        """What in a checkout of the target would stop ``batch`` landing now, if anything.

        Asked before any check runs, of the very tree that would land (the batch stacked on the
        tip, kept while neither moves): tracked changes, and untracked paths in the way of it.
        A landing that still fails (the user started editing during the checks) is asked about
        again here next round, so what blocks it now, not what blocked it then, decides.
        """
        if self.landing_target.remote is not None:
            return None  # landing pushes to the remote; a local checkout just follows later
        checkouts = [
            wt.path
            for wt in list_worktrees(self.root)
            if wt.branch == self.target and wt.path.is_dir()
        ]
        if not checkouts:
            return None
        tip = resolve_commit(self.root, self.target)
        new = self._would_land(tip, batch)
        for path in checkouts:
            block = checkout_block(self.root, path, tip, new)
            if block is not None:
                return block
        return None

    def _would_land(self, tip: str, batch: Sequence[Entry]) -> str:
        """The top of ``batch`` stacked on ``tip`` (its tree is the candidate's), cached."""
        branches = [e.mr.branch for e in batch]
        heads = run_git(["rev-parse", *branches], self.root).stdout.split() if branches else []
        key = (tip, tuple(zip(branches, heads, strict=True)))
        if self._stacked[0] != key:
            self._stacked = (key, build_stack(self.root, tip, [e.item for e in batch]).commit)
        return self._stacked[1]


def protected(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``patterns`` or inside one that names a directory."""
    for pattern in patterns:
        name = pattern.rstrip("/")
        if path == name or path.startswith(name + "/"):
            return True
    return False
