"""Candidates: the batch stacked on the target tip, built into the one commit that is checked
and landed; a failed batch is bisected and whatever passes lands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anyio import to_thread

from stoneforge.git.merge import StackResult, build_stack
from stoneforge.git.repo import identity_env, run_git
from stoneforge.models import MergeStatus
from stoneforge.orchestrator.steward.base import Entry, Outcome, StewardBase


class CandidatesMixin(StewardBase):
    """Stacks the batch on the tip, builds its one commit, bisects a failure."""

    async def _land_batch(self, batch: list[Entry]) -> None:
        try:
            base = await self._tip()
            stack = await self._stack(base, batch)
            conflicted_ids = {c.task_id for c in stack.conflicted}
            clean = [e for e in batch if e.task.id not in conflicted_ids]
            if clean:
                self.current = ", ".join(e.mr.id for e in clean)
                await self._bisect(clean, base, known_failed=False)
            for entry in batch:
                if entry.task.id in conflicted_ids:
                    self.current = entry.mr.id
                    if not await self._blockers_landed(entry):
                        continue  # its blocker did not land: it waits in the queue
                    await self._ladder(entry)
        finally:
            self.current = None

    async def _blockers_landed(self, entry: Entry, ahead: Sequence[Entry] = ()) -> bool:
        graph = await self._graph()
        return not self._blockers_waiting(entry.task.id, {e.task.id for e in ahead}, graph)

    async def _bisect(self, entries: list[Entry], base: str, *, known_failed: bool) -> None:
        """Check ``entries`` stacked on ``base``; land on success, split on failure.

        ``known_failed``: this exact stack is known to fail (the whole group failed and the half
        before it landed unchanged, so this half on the new tip is the same tree), so a group of
        two or more is split without a run. A single merge request is always checked itself.
        """
        # A dependent lands only with or after its blockers: one whose blocker failed in an
        # earlier half stays queued (and waits for the blocker's next attempt).
        kept: list[Entry] = []
        for entry in entries:
            if await self._blockers_landed(entry, kept):
                kept.append(entry)
            else:
                known_failed = False
        entries = kept
        if not entries:
            return
        if known_failed and len(entries) > 1:
            outcome: Outcome = "failed"
        else:
            stack = await self._stack(base, entries)
            if stack.conflicted:  # a new base can make a clean branch conflict: requeue those
                bad = {c.task_id for c in stack.conflicted}
                for entry in entries:
                    if entry.task.id in bad:
                        self._requeue(entry, f"conflicts after an earlier merge into {self.target}")
                entries = [e for e in entries if e.task.id not in bad]
                if not entries:
                    return
                stack = await self._stack(base, entries)
            if stack.commit == stack.base:  # every branch is already in the target
                await self._already_on_target(entries)
                return
            candidate = await self._candidate(base, stack, entries)
            outcome = await self._check_and_land(entries, base, candidate)
        if outcome != "failed":
            return
        if len(entries) == 1:
            return  # _check_and_land recorded the failure
        middle = len(entries) // 2
        left, right = entries[:middle], entries[middle:]
        self.note(f"batch failed its checks; bisecting {len(entries)} merge requests")
        await self._bisect(left, base, known_failed=False)
        new_base = await self._tip()
        left_landed = all(
            self.store.get_merge_request(e.mr.id).status == MergeStatus.MERGED for e in left
        )
        await self._bisect(right, new_base, known_failed=left_landed)

    async def _stack(self, base: str, entries: Sequence[Entry]) -> StackResult:
        items = [e.item for e in entries]
        return await to_thread.run_sync(lambda: build_stack(self.root, base, items))

    async def _candidate(self, base: str, stack: StackResult, entries: Sequence[Entry]) -> str:
        """The commit to check and land: one task's merge, or one commit for a batch.

        A stack is a chain of merge commits; landing it as is would put every intermediate
        merge on the target's first-parent line, unchecked (a task whose test needs another
        task's code would leave a red commit there). So a batch lands as one merge of the
        stack's top onto ``base``: same tree, first parent ``base``, the per-task merges behind
        its second parent.
        """
        if len(entries) == 1:
            return stack.commit
        subject = "; ".join(f"Merge task {e.task.id}: {e.task.title}" for e in entries)
        body = "Checked and landed together by the merge queue.\n\n" + "\n".join(
            f"- {e.task.id}: {e.mr.branch} ({e.mr.id})" for e in entries
        )

        def commit() -> str:
            return run_git(
                ["commit-tree", f"{stack.commit}^{{tree}}", "-p", base, "-p", stack.commit],
                self.root,
                input=f"{subject}\n\n{body}\n",
                env=identity_env(self.root),
            ).stdout.strip()

        return await to_thread.run_sync(commit)


def first_parent(root: Path, commit: str) -> str:
    return run_git(["rev-parse", f"{commit}^1"], root).stdout.strip()
