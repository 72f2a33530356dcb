"""Running the checks: this steward's own checkout at the candidate, exactly as committed, the
configured checks in it (killed at once when the steward stops), and the verdict with a retry
for flaky commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.git.worktrees import checkout_detached
from stoneforge.models import CheckRun
from stoneforge.orchestrator.checkout_setup import copy_untracked
from stoneforge.orchestrator.checks import Verdict, judge, run_checks
from stoneforge.orchestrator.steward.base import ChecksStopped, Entry, StewardBase


class ChecksMixin(StewardBase):
    """This steward's check checkout, the checks in it, and their verdict."""

    async def _verify(
        self, commit: str, *, retry: bool, entries: Sequence[Entry] = (), slot: int = 0
    ) -> Verdict:
        """Check ``commit`` (in look-ahead slot ``slot``'s checkout); with ``retry``, a failure
        counts only if it repeats on a freshly cleaned checkout. A pass on the retry is recorded
        as a flaky run of that command."""
        # Slot 0 is called without the keyword, so a wrapper of `_checks(commit)` still fits.
        first = await (self._checks(commit, slot=slot) if slot else self._checks(commit))
        verdict = judge(first)
        if retry and not verdict.ok:
            again = await (self._checks(commit, slot=slot) if slot else self._checks(commit))
            verdict = judge(first, again)
        ids = ", ".join(e.mr.id for e in entries) or commit[:10]
        for command in verdict.flaky:
            for entry in entries:
                self.store.record_event(
                    "check.flaky",
                    "merge_request",
                    entry.mr.id,
                    {"command": command, "commit": commit},
                )
        for run in verdict.quarantined:
            code = "timed out" if run.exit_code is None else f"exit {run.exit_code}"
            self.note(
                f"{ids}: quarantined check `{run.command}` failed ({code}); it does not block "
                "landing (merge.quarantine)"
            )
        return verdict

    async def _checks(self, commit: str, *, slot: int = 0) -> list[CheckRun]:
        """Run the checks on a fresh checkout of ``commit`` (look-ahead slot ``slot``'s own);
        each in its own process group, recorded in this steward's run file while it runs,
        killed at once by ``stop()`` (which raises ChecksStopped here) or by cancelling the
        round (or the look-ahead candidate)."""
        steward = self.config.agents.steward
        commands = self.config.merge.checks if steward.runChecks else []
        if not commands:
            return []
        setup = self.config.worktree
        registry = self._checks_registry
        timeout_s, quarantine = self.config.merge.checkTimeoutS, self.config.merge.quarantine
        if self.config.merge.checkOn == "cluster":
            # A Ray task on a node with a check slot, in that node's own check checkout.
            from stoneforge.cluster.checks import run_checks_on_cluster

            if setup.setupChecks and setup.setup:
                commands = [*setup.setup, *commands]
            checking = run_checks_on_cluster(self.root, self.config, commit, commands, self.id)
        else:
            path = await self._fresh_checkout(commit, slot=slot)
            if setup.setupChecks and (setup.setup or setup.copyFiles):
                # The same set-up as a task checkout, on each freshly cleaned candidate; a
                # failing set-up command fails the candidate like a check.
                await to_thread.run_sync(lambda: copy_untracked(self.root, path, setup.copyFiles))
                commands = [*setup.setup, *commands]
            checking = run_checks(
                commands,
                path,
                timeout_s,
                quarantine=quarantine,
                marker=self.id,
                on_start=lambda command, pgid: registry.check_started(pgid, command, commit, slot),
            )
        with anyio.CancelScope() as scope:
            self._check_scopes.add(scope)
            if self._stopped:
                scope.cancel()
            try:
                runs = await checking
            finally:
                self._check_scopes.discard(scope)
                registry.check_ended(slot)
        if scope.cancelled_caught:
            raise ChecksStopped(f"stopped while checking {commit[:10]}")
        self.check_runs += 1
        return runs

    async def _claim_checkout(self) -> None:
        """Once: claim this steward's checkout, kill dead stewards' checks, remove theirs."""
        if self._registered:
            return
        self._registered = True
        registry = self._checks_registry
        await to_thread.run_sync(registry.register)
        for line in await to_thread.run_sync(registry.sweep):
            self.note(line)

    async def _fresh_checkout(self, commit: str, *, slot: int = 0) -> Path:
        """This steward's check checkout (of look-ahead slot ``slot``) at ``commit``, exactly as
        committed (`git clean -ffdx`).

        The first time, this steward claims its checkout and clears up after stewards whose
        process is gone: their checks are killed before their checkouts are removed.
        """
        await self._claim_checkout()
        path = self._checks_registry.checkout_for(slot)
        await to_thread.run_sync(lambda: checkout_detached(self.root, path, commit))
        return path
