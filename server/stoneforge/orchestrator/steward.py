"""The steward: a merge queue that checks the exact commit that lands.

For the head of the queue it builds the candidate (the merge of the current target tip and the
branch, or a stack of several branches for a batch), runs the checks in its own worktree on that
exact commit, and lands it with a compare-and-swap of the target ref. The target never holds a
commit whose checks did not pass. A failed batch is bisected: the halves are checked on their own
and whatever passes lands. A branch that conflicts goes up a ladder: git's merge, the shared
rerere cache, then a steward agent session; if all fail, a fix task is created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from anyio import to_thread

from stoneforge.agents import AgentProvider, Role, build_spec, default_config_dir, run_session
from stoneforge.config import StoneforgeConfig
from stoneforge.git.conflicts import find_conflict_hunks
from stoneforge.git.errors import CheckoutDirty, TargetMoved
from stoneforge.git.forecast import forecast
from stoneforge.git.merge import StackItem, abort_merge, build_stack, land, merge_in_worktree
from stoneforge.git.repo import resolve_commit, run_git
from stoneforge.git.snapshot import commit_all
from stoneforge.git.worktrees import checkout_detached
from stoneforge.models import (
    CheckRun,
    MergeRequest,
    MergeStatus,
    SessionRole,
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.checks import passed, run_checks
from stoneforge.orchestrator.landing import record_landed
from stoneforge.store import Store

log = logging.getLogger("stoneforge.steward")

STEWARD_WORKTREE = "_steward"
#: When the user's checkout of the target is dirty, look again after this long.
DIRTY_CHECKOUT_RETRY_S = 5.0

Outcome = Literal["landed", "failed", "requeued"]


@dataclass
class Entry:
    """One queued merge request with its task."""

    mr: MergeRequest
    task: Task

    @property
    def item(self) -> StackItem:
        return StackItem(task_id=self.task.id, title=self.task.title, branch=self.mr.branch)


class Steward:
    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        provider: AgentProvider,
        target: str,
        agent_env: dict[str, str],
        note: Callable[[str], None],
        on_landed: Callable[[], None],
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.provider = provider
        self.target = target
        self.agent_env = agent_env
        self.note = note
        self.on_landed = on_landed
        self._current: str | None = None
        #: Told whenever the merge request(s) being checked change (None: nothing is checked).
        self.on_current: Callable[[str | None], None] = lambda current: None
        #: Check runs made (each command of `merge.checks` on one commit counts once).
        self.check_runs = 0
        self._wake = anyio.Event()
        self._stopped = False
        self._retry_in: float | None = None

    @property
    def current(self) -> str | None:
        """The merge request(s) being checked right now, for the live view and progress."""
        return self._current

    @current.setter
    def current(self, value: str | None) -> None:
        if value != self._current:
            self._current = value
            self.on_current(value)

    # -- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopped = True
        self.wake()

    async def run(self) -> None:
        while not self._stopped:
            self._wake = anyio.Event()
            self._retry_in = None
            try:
                progressed = await self.round()
            except Exception:
                log.exception("steward round failed")
                progressed = False
            if progressed:
                continue
            timeout = self._retry_in if self._retry_in is not None else float("inf")
            with anyio.move_on_after(timeout):
                await self._wake.wait()

    # -- one round -----------------------------------------------------------------------------

    def queue(self) -> list[Entry]:
        """Pending merge requests: blockers before dependents, then effective priority, age."""
        pending = self.store.list_merge_requests(MergeStatus.PENDING)
        if not pending:
            return []
        graph = self.store.graph()
        effective = graph.effective_priorities()
        entries = [Entry(mr, self.store.get_task(mr.task_id)) for mr in pending]
        ids = {e.task.id for e in entries}

        def depth(task_id: str, seen: frozenset[str] = frozenset()) -> int:
            deps = [d for d in graph.depends_on.get(task_id, ()) if d in ids and d not in seen]
            return 1 + max((depth(d, seen | {task_id}) for d in deps), default=0)

        entries.sort(key=lambda e: (depth(e.task.id), effective.get(e.task.id, 3), e.mr.created_at))
        return entries

    async def round(self) -> bool:
        """Process the head of the queue; False when there was nothing to do."""
        await self._forecast()
        queue = self.queue()
        if not queue:
            return False
        steward = self.config.agents.steward
        if not steward.autoMerge:
            head = queue[0]
            await self._one_for_approval(head)
            return True
        batch = queue[: self.config.merge.batchSize]
        await self._land_batch(batch)
        return True

    async def _land_batch(self, batch: list[Entry]) -> None:
        base = await self._tip()
        stack = await to_thread.run_sync(
            lambda: build_stack(self.root, base, [e.item for e in batch])
        )
        conflicted_ids = {c.task_id for c in stack.conflicted}
        clean = [e for e in batch if e.task.id not in conflicted_ids]
        if clean:
            self.current = ", ".join(e.mr.id for e in clean)
            await self._bisect(clean, base, known_failed=False)
        for entry in batch:
            if entry.task.id in conflicted_ids:
                self.current = entry.mr.id
                await self._ladder(entry)
        self.current = None

    async def _bisect(self, entries: list[Entry], base: str, *, known_failed: bool) -> None:
        """Check ``entries`` stacked on ``base``; land on success, split on failure.

        ``known_failed``: this exact stack is known to fail (the whole batch failed and the half
        before it landed unchanged), so a group of two or more is split without a run.
        """
        if not entries:
            return
        if known_failed and len(entries) > 1:
            outcome: Outcome = "failed"
        else:
            stack = await to_thread.run_sync(
                lambda: build_stack(self.root, base, [e.item for e in entries])
            )
            if stack.conflicted:  # a new base can make a clean branch conflict: requeue those
                bad = {c.task_id for c in stack.conflicted}
                for entry in entries:
                    if entry.task.id in bad:
                        self._requeue(entry, "conflicts after an earlier merge; rebuilding")
                entries = [e for e in entries if e.task.id not in bad]
                if not entries:
                    return
                stack = await to_thread.run_sync(
                    lambda: build_stack(self.root, base, [e.item for e in entries])
                )
            commits = {c.task_id: c.commit or stack.commit for c in stack.merged}
            outcome = await self._check_and_land(entries, base, stack.commit, commits)
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

    async def _check_and_land(
        self, entries: list[Entry], base: str, commit: str, commits: dict[str, str]
    ) -> Outcome:
        for entry in entries:
            self.store.update_merge_request(
                entry.mr.id, status=MergeStatus.TESTING, candidate_commit=commits[entry.task.id]
            )
        runs = await self._checks(commit)
        if not passed(runs) and len(entries) == 1:
            retry = await self._checks(commit)  # a failure counts only if it repeats
            if passed(retry):
                retry[-1].flaky = True
                runs = [*runs, *retry]
                self.note(f"{entries[0].mr.id}: a check failed once and passed on retry (flaky)")
            else:
                runs = [*runs, *retry]
        if not passed(runs):
            if len(entries) == 1:
                self._test_failed(entries[0], runs)
            else:
                for entry in entries:
                    self.store.update_merge_request(
                        entry.mr.id, status=MergeStatus.PENDING, checks=runs
                    )
            return "failed"
        return await self._land(entries, base, commit, commits, runs)

    async def _land(
        self,
        entries: list[Entry],
        base: str,
        commit: str,
        commits: dict[str, str],
        runs: list[CheckRun],
    ) -> Outcome:
        try:
            await to_thread.run_sync(
                lambda: land(
                    self.root,
                    self.target,
                    commit,
                    base,
                    message=f"stoneforge: land {', '.join(e.mr.id for e in entries)}",
                )
            )
        except TargetMoved as exc:
            for entry in entries:
                self._requeue(entry, f"the target moved while checking ({exc}); rebuilding")
            return "requeued"
        except CheckoutDirty as exc:
            for entry in entries:
                self._requeue(entry, str(exc))
            self._retry_in = DIRTY_CHECKOUT_RETRY_S
            self.note(f"not landing: {exc}")
            return "requeued"
        landed = [(entry.mr, commits[entry.task.id]) for entry in entries]
        await to_thread.run_sync(
            lambda: record_landed(self.store, self.root, self.config, self.target, landed, runs)
        )
        self.note(f"landed {', '.join(e.mr.id for e in entries)} on {self.target} at {commit[:10]}")
        self.on_landed()
        return "landed"

    async def _checks(self, commit: str) -> list[CheckRun]:
        steward = self.config.agents.steward
        commands = self.config.merge.checks if steward.runChecks else []
        if not commands:
            return []
        path = self._worktree_path()
        await to_thread.run_sync(lambda: checkout_detached(self.root, path, commit))
        runs = await to_thread.run_sync(
            lambda: run_checks(commands, path, self.config.merge.checkTimeoutS)
        )
        self.check_runs += 1
        return runs

    def _requeue(self, entry: Entry, reason: str) -> None:
        self.store.update_merge_request(entry.mr.id, status=MergeStatus.PENDING, reason=reason)

    def _test_failed(self, entry: Entry, runs: list[CheckRun]) -> None:
        failing = next((r for r in runs if r.exit_code != 0), runs[-1])
        reason = f"check `{failing.command}` failed (exit {failing.exit_code})"
        self.store.update_merge_request(
            entry.mr.id, status=MergeStatus.TEST_FAILED, checks=runs, reason=reason
        )
        self.note(f"{entry.mr.id} ({entry.task.id}) failed its checks: {reason}")
        note = (
            f"The merge queue checked the merge of your branch with {self.target} and "
            f"{reason}. Fix it on your branch. Output:\n{failing.output_tail[-2500:]}"
        )
        self._send_back(entry.task, note)

    def _send_back(self, task: Task, note: str) -> None:
        """Return the task to a worker, or fail it when its attempts are used up."""
        task = self.store.get_task(task.id)
        if task.attempts >= self.config.orchestrator.maxAttempts:
            self.store.update_task(task.id, status=TaskStatus.FAILED, note=note, kind="task.failed")
        else:
            self.store.update_task(task.id, status=TaskStatus.OPEN, note=note, kind="task.requeued")
        self.on_landed()  # the dispatcher should look again

    # -- approval (autoMerge: false) -----------------------------------------------------------

    async def _one_for_approval(self, entry: Entry) -> None:
        self.current = entry.mr.id
        base = await self._tip()
        stack = await to_thread.run_sync(lambda: build_stack(self.root, base, [entry.item]))
        if stack.conflicted:
            await self._ladder(entry)
            self.current = None
            return
        commit = stack.commit
        if entry.mr.approved_at is not None:
            await self._check_and_land([entry], base, commit, {entry.task.id: commit})
        else:
            self.store.update_merge_request(
                entry.mr.id, status=MergeStatus.TESTING, candidate_commit=commit
            )
            runs = await self._checks(commit)
            if not passed(runs):
                retry = await self._checks(commit)
                runs = [*runs, *retry]
                if passed(retry):
                    retry[-1].flaky = True
            if passed(runs):
                self.store.update_merge_request(
                    entry.mr.id,
                    status=MergeStatus.AWAITING_APPROVAL,
                    checks=runs,
                    reason=None,
                )
                self.note(f"{entry.mr.id} passed its checks and waits for approval")
            else:
                self._test_failed(entry, runs)
        self.current = None

    # -- the conflict ladder -------------------------------------------------------------------

    async def _ladder(self, entry: Entry) -> None:
        """git's merge failed: try the rerere cache, then a steward agent, then give up."""
        base = await self._tip()
        path = self._worktree_path()
        await to_thread.run_sync(lambda: checkout_detached(self.root, path, base))
        result = await to_thread.run_sync(
            lambda: merge_in_worktree(
                path, base, entry.mr.branch, task_id=entry.task.id, title=entry.task.title
            )
        )
        commit = result.commit
        how = "rerere" if commit else ""
        if commit is None:
            self.note(
                f"{entry.mr.id}: conflict in {', '.join(result.conflicted)}; a steward agent "
                "resolves it"
            )
            commit = await self._agent_resolve(entry, path, result.conflicted)
            how = "the steward agent"
        if commit is None:
            await to_thread.run_sync(lambda: abort_merge(path))
            self._give_up(entry, result.conflicted)
            return
        self.note(f"{entry.mr.id}: conflict resolved by {how}; checking the result")
        await self._check_and_land([entry], base, commit, {entry.task.id: commit})

    async def _agent_resolve(self, entry: Entry, path: Path, files: list[str]) -> str | None:
        session = self.store.start_session(entry.task.id, SessionRole.STEWARD)
        theirs = self.store.get_task(entry.task.id)
        prompt = (
            f"The merge of branch `{entry.mr.branch}` (task {theirs.id}: {theirs.title}) into "
            f"`{self.target}` stopped with conflicts in: {', '.join(files)}.\n\n"
            f"The branch's change: {entry.mr.summary[:2000]}\n\n"
            "Resolve every conflict marker (<<<<<<<, =======, >>>>>>>) in those files so that "
            f"both the work already on `{self.target}` and the branch's change are kept, as the "
            "code's intent requires. Edit only those files. Do not commit and do not run git "
            "merge, rebase or reset: the steward commits your resolution and checks it."
        )
        steward = self.config.agents.steward
        spec = build_spec(
            Role.STEWARD,
            cwd=path,
            prompt=prompt,
            config_dir=default_config_dir(self.root, session.id),
            repo_root=self.root,
            target_branch=self.target,
            model=steward.model,
            env=self.agent_env,
            max_turns=steward.maxTurns,
            idle_timeout_s=steward.idleTimeoutS,
        )

        def on_update(stats: object) -> None:
            self.store.update_session(
                session.id,
                context_tokens=stats.context_tokens,  # type: ignore[attr-defined]
                input_tokens=stats.total_input_tokens,  # type: ignore[attr-defined]
                output_tokens=stats.output_tokens,  # type: ignore[attr-defined]
                cost_usd=stats.cost_usd or 0.0,  # type: ignore[attr-defined]
            )

        outcome = await run_session(self.provider, spec, on_update=on_update)
        status = SessionStatus.COMPLETED if outcome.status == "completed" else SessionStatus.FAILED
        self.store.update_session(
            session.id,
            status=status,
            ended_at=utcnow(),
            pid=outcome.pid,
            provider_session_id=outcome.provider_session_id,
            error=outcome.error,
        )
        remaining = await to_thread.run_sync(lambda: self._markers_left(path, files))
        if outcome.status != "completed" or remaining:
            if remaining:
                self.note(f"{entry.mr.id}: conflict markers remain in {', '.join(remaining)}")
            return None
        message = f"Merge task {entry.task.id}: {entry.task.title} (conflicts resolved by steward)"
        return await to_thread.run_sync(lambda: commit_all(path, message))

    @staticmethod
    def _markers_left(path: Path, files: Sequence[str]) -> list[str]:
        left = []
        for name in files:
            file = path / name
            if file.is_file():
                text = file.read_text(encoding="utf-8", errors="replace")
                if find_conflict_hunks(text) or "<<<<<<< " in text:
                    left.append(name)
        return left

    def _give_up(self, entry: Entry, files: list[str]) -> None:
        files_text = ", ".join(files) or "several files"
        reason = f"conflicts with {self.target} in {files_text} that could not be resolved"
        self.store.update_merge_request(entry.mr.id, status=MergeStatus.CONFLICT, reason=reason)
        fix = self.store.create_task(
            f"Resolve merge conflict: {entry.task.title}",
            description=(
                f"The branch `{entry.mr.branch}` of task {entry.task.id} ('{entry.task.title}') "
                f"conflicts with `{self.target}` in {files_text}, and the merge queue could not "
                "resolve it. Bring that task's change onto the current "
                f"`{self.target}`: read it with `git diff {self.target}...{entry.mr.branch}`, "
                "re-apply it on your branch, and keep the work already on "
                f"`{self.target}` intact."
            ),
            priority=1,
        )
        self.store.update_task(
            entry.task.id,
            status=TaskStatus.FAILED,
            note=f"merge conflict with {self.target} in {files_text}; fix task {fix.id} created",
            kind="task.failed",
        )
        self.note(f"{entry.mr.id}: unresolvable conflict; fix task {fix.id} created")
        self.on_landed()

    # -- early detection -----------------------------------------------------------------------

    async def _forecast(self) -> None:
        """Forecast conflicts among the active branches; record them when they change."""
        branches = {
            t.id: t.branch
            for t in self.store.list_tasks()
            if t.status in (TaskStatus.IN_PROGRESS, TaskStatus.REVIEW) and t.branch
        }
        if not branches:
            return
        try:
            result = await to_thread.run_sync(lambda: forecast(self.root, self.target, branches))
        except Exception:
            log.exception("forecast failed")
            return
        conflicts = [
            {"ours": p.ours, "theirs": p.theirs, "paths": p.paths} for p in result.conflicts
        ]
        previous = self.store.last_event("forecast.updated")
        if previous is not None and previous.data.get("conflicts") == conflicts:
            return
        self.store.record_event("forecast.updated", "forecast", None, {"conflicts": conflicts})
        for pair in conflicts:
            self.note(
                f"forecast: {pair['ours']} and {pair['theirs']} will conflict in {', '.join(pair['paths'])}"
            )

    # -- helpers -------------------------------------------------------------------------------

    def _worktree_path(self) -> Path:
        configured = Path(self.config.orchestrator.worktreeDir)
        base = configured if configured.is_absolute() else self.root / configured
        return base / STEWARD_WORKTREE

    async def _tip(self) -> str:
        return await to_thread.run_sync(lambda: resolve_commit(self.root, self.target))


def first_parent(root: Path, commit: str) -> str:
    return run_git(["rev-parse", f"{commit}^1"], root).stdout.strip()
