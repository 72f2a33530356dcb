"""The conflict ladder: git's merge with the shared rerere cache, then a steward agent session
(tried again when it crashes, then held for a while), and when nothing resolves it a fix task."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from anyio import to_thread

from stoneforge.errors import NotFoundError
from stoneforge.git.merge import abort_merge, merge_in_worktree
from stoneforge.git.repo import run_git
from stoneforge.lifecycle import MrEvent
from stoneforge.models import MergeStatus, Task
from stoneforge.orchestrator.steward.base import (
    Entry,
    ResolverCrashed,
    ResolverInterrupted,
    StewardBase,
)

_TASK_IN_MESSAGE = re.compile(r"Merge task (t\d+):")


class LadderMixin(StewardBase):
    """A conflicted branch up the ladder: git, rerere, the agent, a fix task."""

    async def _ladder(self, entry: Entry) -> None:
        """git's merge-tree failed: git merge with the rerere cache, then an agent, or give up.

        Only a resolver session that completed and still left the conflict gives up; one that
        crashed (or hung, or would not start) is our failure, not the task's: the rung is tried
        again from a fresh merge, and after RESOLVER_RETRIES more crashes the MR waits.
        """
        if self._resolver_held(entry):
            return
        base = await self._tip()
        path = self._worktree_path()
        crashes: list[str] = []
        while True:
            await self._fresh_checkout(base)
            result = await to_thread.run_sync(
                lambda: merge_in_worktree(
                    path, base, entry.mr.branch, task_id=entry.task.id, title=entry.task.title
                )
            )
            if result.commit is not None:
                how = "the rerere cache" if result.resolved_by_rerere else "git's merge"
                commit: str | None = result.commit
                break
            self.note(
                f"{entry.mr.id}: conflict in {', '.join(result.conflicted)}; a steward agent "
                "resolves it" + (f" (try {len(crashes) + 1})" if crashes else "")
            )
            try:
                resolved = await self._agent_resolve(entry, path, base, result.conflicted)
            except ResolverInterrupted as why:  # stopping: not a verdict, it stays queued
                await to_thread.run_sync(lambda: abort_merge(path))
                self.note(f"{entry.mr.id}: {why}")
                return
            how = "the steward agent"
            if not isinstance(resolved, ResolverCrashed):
                commit = resolved
                break
            await to_thread.run_sync(lambda: abort_merge(path))
            crashes.append(resolved.reason)
            if len(crashes) > self.resolver_retries:
                self._resolver_crashed(entry, crashes)
                return
            self.note(f"{entry.mr.id}: the steward agent crashed ({resolved.reason}); trying again")
        if commit is None:
            await to_thread.run_sync(lambda: abort_merge(path))
            await self._give_up(entry, result.conflicted)
            return
        self._resolver_hold.pop(entry.mr.id, None)
        self.note(f"{entry.mr.id}: merged by {how}; checking the result")
        await self._check_and_land([entry], base, commit)

    def _resolver_held(self, entry: Entry) -> bool:
        """Its resolver kept crashing a moment ago: the MR waits (the round looks again then)."""
        until, _ = self._resolver_hold.get(entry.mr.id, (0.0, 0))
        wait = until - time.monotonic()
        if wait <= 0:
            return False
        self._retry_in = min(self._retry_in or wait, wait)
        return True

    def _resolver_crashed(self, entry: Entry, crashes: list[str]) -> None:
        """Every try crashed: the MR stays pending with the reason, held for a while."""
        _, times = self._resolver_hold.get(entry.mr.id, (0.0, 0))
        hold = min(self.resolver_hold_s * 2**times, self.resolver_hold_max_s)
        self._resolver_hold[entry.mr.id] = (time.monotonic() + hold, times + 1)
        self._retry_in = min(self._retry_in or hold, hold)
        reason = (
            f"the steward agent resolving its conflict did not finish in {len(crashes)} tries "
            f"(last: {crashes[-1]}); trying again in {hold:g}s"
        )
        if self.store.get_merge_request(entry.mr.id).status != MergeStatus.PENDING:
            return  # rejected meanwhile: nothing to wait for
        self.store.update_merge_request(entry.mr.id, reason=reason)  # a reason, not a state
        self.note(f"{entry.mr.id}: {reason}")

    async def _give_up(self, entry: Entry, files: list[str]) -> None:
        files_text = ", ".join(files) or "several files"
        others = await to_thread.run_sync(lambda: self._landed_tasks_touching(entry, files))
        with_whom = (
            "the work of "
            + ", ".join(f"task {t.id} ('{t.title}', branch `{t.branch}`)" for t in others)
            + f" already on `{self.target}`"
            if others
            else f"`{self.target}`"
        )
        reason = f"conflicts with {with_whom} in {files_text} that could not be resolved"
        if not self._transition_mr(entry.mr.id, MrEvent.CONFLICT, reason=reason):
            return
        fix = self.store.create_task(
            f"Resolve merge conflict: {entry.task.title}",
            description=(
                f"The branch `{entry.mr.branch}` of task {entry.task.id} ('{entry.task.title}') "
                f"conflicts with {with_whom} in {files_text}, and the merge queue could not "
                "resolve it. Bring that task's change onto the current "
                f"`{self.target}`: read it with `git diff {self.target}...{entry.mr.branch}`, "
                "re-apply it on your branch, and keep the work already on "
                f"`{self.target}` intact."
            ),
            priority=1,
        )
        self._send_back(
            entry,
            f"merge conflict with {with_whom} in {files_text}; fix task {fix.id} created",
            fail=True,
        )
        self.note(f"{entry.mr.id}: unresolvable conflict; fix task {fix.id} created")

    def _landed_tasks_touching(self, entry: Entry, files: Sequence[str]) -> list[Task]:
        """Tasks merged into the target since ``entry``'s branch forked that changed ``files``.

        Each task's own merge commit ("Merge task <id>: ...", on the first-parent line or, for a
        batch, behind it) is compared with its first parent.
        """
        target = self.landing_target.ref
        fork = run_git(["merge-base", target, entry.mr.branch], self.root, check=False)
        if fork.returncode != 0 or not files:
            return []
        merges = run_git(
            ["log", "--merges", "--format=%H%x00%s", f"{fork.stdout.strip()}..{target}"],
            self.root,
        ).stdout
        found: list[Task] = []
        for line in merges.splitlines():
            sha, _, subject = line.partition("\0")
            ids = _TASK_IN_MESSAGE.findall(subject)
            if len(ids) != 1 or ids[0] == entry.task.id or any(t.id == ids[0] for t in found):
                continue  # a batch commit names several tasks: its per-task merges are behind it
            changed = run_git(["diff", "--name-only", f"{sha}^1", sha, "--", *files], self.root)
            if not changed.stdout.strip():
                continue
            try:
                found.append(self.store.get_task(ids[0]))
            except NotFoundError:  # a message naming a task of another store
                continue
        return found
