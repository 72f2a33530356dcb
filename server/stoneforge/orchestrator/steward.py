"""The steward: a merge queue that checks the exact commit that lands.

For the head of the queue it builds the candidate (the merge of the current target tip and the
branch, or for a batch one commit on the target tip that brings in a stack of several branches),
runs the checks in its own worktree on that exact commit, and lands it with a compare-and-swap of
the target ref. The target never holds a commit whose checks did not pass, and every commit on its
first-parent line is one that was checked: a batch lands as a single commit whose second parent is
the stack of its tasks' merges. A failed batch is bisected: the halves are checked on their own and
whatever passes lands. A branch that conflicts goes up a ladder: git's merge, the shared rerere
cache, then a steward agent session; if all fail, a fix task is created.

Landing order: blockers before their dependents (a dependent's merge request waits while a
blocker that can still land has not), then effective priority, then age.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    AgentSession,
    Role,
    build_spec,
    claude_setup,
    default_config_dir,
    kill_tree,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidTransitionError, LeaseLostError, NotFoundError
from stoneforge.git.blockers import CheckoutBlock, checkout_block
from stoneforge.git.conflicts import find_conflict_hunks
from stoneforge.git.errors import CheckoutDirty, TargetMoved
from stoneforge.git.forecast import forecast
from stoneforge.git.merge import (
    StackItem,
    StackResult,
    abort_merge,
    build_stack,
    is_ancestor,
    merge_in_worktree,
)
from stoneforge.git.remote import PushRefused
from stoneforge.git.repo import identity_env, resolve_commit, run_git
from stoneforge.git.snapshot import commit_all
from stoneforge.git.target import TargetBranch
from stoneforge.git.worktrees import checkout_detached, list_worktrees
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import (
    CheckRun,
    LandingPause,
    MergeRequest,
    MergeStatus,
    SessionRole,
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.check_procs import CheckRegistry
from stoneforge.orchestrator.checkout_setup import copy_untracked
from stoneforge.orchestrator.checks import Verdict, blocks, judge, run_checks
from stoneforge.orchestrator.landing import (
    land_merge_requests,
    record_merged,
    remove_merged_worktrees,
)
from stoneforge.orchestrator.pause import PauseState
from stoneforge.orchestrator.recovery import processes_of_session
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.store import Fence, Store

log = logging.getLogger("stoneforge.steward")

#: When the user's checkout of the target is dirty, look again after this long.
DIRTY_CHECKOUT_RETRY_S = 5.0
#: A conflict-resolving agent session that crashed (or would not start) is tried again this many
#: more times; then its merge request waits, RESOLVER_HOLD_S doubling per time, before the next.
RESOLVER_RETRIES = 2
RESOLVER_HOLD_S = 30.0
RESOLVER_HOLD_MAX_S = 600.0

Outcome = Literal["landed", "failed", "requeued", "awaiting"]

#: A blocker in one of these states may still land, so its dependents' merge requests wait.
_ALIVE = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.REVIEW)
_TASK_IN_MESSAGE = re.compile(r"Merge task (t\d+):")


class ChecksStopped(Exception):  # noqa: N818 - a signal, not an error
    """The steward was stopped while a check ran: the check was killed, the round ends."""


@dataclass(frozen=True)
class ResolverCrashed:
    """The conflict-resolving session did not complete: a crash of ours, not a verdict."""

    reason: str


class ResolverInterrupted(Exception):  # noqa: N818 - a signal, not an error
    """The conflict-resolving agent was stopped with the orchestrator: its rung waits."""


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
        fence: Fence | None = None,
        steward_id: str | None = None,
    ) -> None:
        """``steward_id`` names this steward's own check checkout, `_steward-<id>`, and its run
        files (default: a fresh short id; the orchestrator may pass its lease token)."""
        self.root = root
        #: The orchestrator's lease: every state write and landing proves it still holds it.
        self.fence = fence
        self.config = config
        self.store = store
        self.provider = provider
        self.target = target
        #: Where candidates are built and landed: the local branch, or it on `merge.remote`.
        self.landing_target = TargetBranch(root, target, config.merge.remote)
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
        self._said: set[str] = set()  # notes said once per condition (held MRs)
        #: Whether landing is paused by the target's checkout; told to the store on a change.
        self.pause = PauseState(store, note)
        self._stacked: tuple[object, str] = (None, "")  # (tip and branch heads, stack top)
        self.id = steward_id or uuid.uuid4().hex[:8]
        configured = Path(self.config.orchestrator.worktreeDir)
        self._checks_registry = CheckRegistry(
            root, configured if configured.is_absolute() else root / configured, self.id
        )
        self._registered = False
        self._check_scope: anyio.CancelScope | None = None
        #: Merge requests whose resolver kept crashing: when to try again, and how often it did.
        self._resolver_hold: dict[str, tuple[float, int]] = {}
        #: Protected paths each MR's branch head changes (asked once per head).
        self._protected_seen: dict[tuple[str, str], list[str]] = {}
        #: The conflict-resolving agent's session while it runs (its row id, then its live CLI).
        self._agent_session_id: str | None = None
        self._agent: AgentSession | None = None

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
        """Stop after the current round; a check that runs now is killed at once."""
        self._stopped = True
        if self._check_scope is not None:
            self._check_scope.cancel()
        if self._agent is not None:
            await self._agent.stop("stoneforge: the orchestrator is stopping")
        self.wake()

    def kill(self) -> None:
        """A forced stop: kill the conflict-resolving agent's CLI now."""
        self._stopped = True
        if self._agent is not None:
            self._agent.kill()
        if self._agent_session_id is not None:
            for pid in processes_of_session(self.root, self._agent_session_id):
                kill_tree(pid)

    async def run(self) -> None:
        try:
            await self._claim_checkout()  # a dead steward's check stops now, not at our first
            while not self._stopped:
                self._wake = anyio.Event()
                self._retry_in = None
                try:
                    progressed = await self.round()
                except ChecksStopped:
                    break
                except LeaseLostError as exc:
                    # Another orchestrator holds the lease now: this steward must not act again.
                    log.error("steward stopping: %s", exc)
                    self.note(f"steward stopped: {exc}")
                    self._stopped = True
                    break
                except Exception:
                    log.exception("steward round failed")
                    progressed = False
                if progressed and self._retry_in is None:
                    continue
                timeout = self._retry_in if self._retry_in is not None else float("inf")
                with anyio.move_on_after(timeout):
                    await self._wake.wait()
        finally:
            self._registered = False
            self._checks_registry.unregister()

    # -- the queue -----------------------------------------------------------------------------

    def queue(self) -> list[Entry]:
        """Pending merge requests that may land now: blockers first, then priority, then age.

        A merge request whose task is no longer in review is dropped (cancelled or failed: the
        MR is rejected; still in progress: the worker is finishing, so it waits). One whose
        branch is gone is rejected and its task sent back. A dependent waits while one of its
        blockers can still land and is not ahead of it in this queue.
        """
        for mr in self.store.list_merge_requests(MergeStatus.AWAITING_APPROVAL):
            stale = self._stale(mr, self.store.get_task(mr.task_id))
            if stale:  # nobody should be asked to approve what can no longer land
                self._reject(mr, stale)
        pending = self.store.list_merge_requests(MergeStatus.PENDING)
        if not pending:
            return []
        branches = self._branch_names()
        entries: list[Entry] = []
        for mr in pending:
            task = self.store.get_task(mr.task_id)
            stale = self._stale(mr, task)
            if stale:
                self._reject(mr, stale)
                continue
            if task.status != TaskStatus.REVIEW:
                continue
            if mr.branch not in branches:
                self._branch_gone(Entry(mr, task))
                continue
            entries.append(Entry(mr, task))
        if not entries:
            return []
        graph = self.store.graph()
        effective = graph.effective_priorities()
        ids = {e.task.id for e in entries}

        def depth(task_id: str, seen: frozenset[str] = frozenset()) -> int:
            deps = [d for d in graph.depends_on.get(task_id, ()) if d in ids and d not in seen]
            return 1 + max((depth(d, seen | {task_id}) for d in deps), default=0)

        entries.sort(key=lambda e: (depth(e.task.id), effective.get(e.task.id, 3), e.mr.created_at))
        ready: list[Entry] = []
        ahead: set[str] = set()
        for entry in entries:
            waiting = self._blockers_waiting(entry.task.id, ahead)
            if waiting:
                key = f"held {entry.mr.id} {','.join(waiting)}"
                if key not in self._said:
                    self._said.add(key)
                    self.note(
                        f"{entry.mr.id} ({entry.task.id}) waits for its blocker(s) "
                        f"{', '.join(waiting)} to land first"
                    )
                continue
            ready.append(entry)
            ahead.add(entry.task.id)
        return ready

    @staticmethod
    def _stale(mr: MergeRequest, task: Task) -> str | None:
        """Why ``mr`` can never land any more (its task ended, or moved on to a newer attempt)."""
        if task.status in (TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.MERGED):
            return f"not merged: its task {task.id} is {task.status.value}"
        if mr.attempt is not None and mr.attempt != task.dispatches:
            return f"superseded: task {task.id} was dispatched again since"
        return None

    def _blockers_waiting(self, task_id: str, ahead: set[str]) -> list[str]:
        """Blockers of ``task_id`` that may still land and are neither merged nor in ``ahead``.

        A blocker may still land while it is in progress or in review, or open, dispatchable (no
        plan or an active one) and not itself stuck behind a failed or cancelled task: the
        dispatcher's rule for what is done, so a held MR never keeps `--until-idle` waiting.
        """
        graph = self.store.graph()
        memo: dict[str, bool] = {}

        def may_land(dep: str, seen: frozenset[str] = frozenset()) -> bool:
            if dep not in memo:
                node = graph.nodes.get(dep)
                if node is None or node.status not in _ALIVE:
                    memo[dep] = False
                elif node.status != TaskStatus.OPEN:
                    memo[dep] = True
                else:
                    memo[dep] = node.plan_active and all(
                        graph.nodes[d].status == TaskStatus.MERGED or may_land(d, seen | {dep})
                        for d in graph.depends_on.get(dep, ())
                        if d in graph.nodes and d not in seen
                    )
            return memo[dep]

        return [d for d in graph.depends_on.get(task_id, ()) if d not in ahead and may_land(d)]

    async def round(self) -> bool:
        """Process the head of the queue; False when there was nothing to do (or it must wait)."""
        self._recover_testing()
        await self._forecast()
        auto = self.config.agents.steward.autoMerge
        batch: list[Entry] = []
        block: CheckoutBlock | None = None
        for _ in range(2):
            # Asked twice when the checkout was just freed: MRs that arrived while it was being
            # looked at join this batch instead of waiting for the next one.
            previous = [e.mr.id for e in batch]
            queue = self.queue()
            for_human = {e.mr.id for e in queue if self._protected_changes(e)}
            solo = not auto or (bool(queue) and queue[0].mr.id in for_human)
            if solo:  # one at a time, checked and then waiting for a person's approval
                batch = queue[:1]
            else:
                batch = [e for e in queue if e.mr.id not in for_human][
                    : self.config.merge.batchSize
                ]
            will_land = bool(batch) and (not solo or batch[0].mr.approved_at is not None)
            block = (
                await to_thread.run_sync(functools.partial(self._checkout_blocked, batch))
                if will_land
                else None
            )
            if block is not None or self.pause.current is None or previous:
                break
        self.pause.update(block)  # records steward.paused / steward.resumed when it changes
        if block is not None:
            # Landing would fail: spend no check runs until the user's checkout can follow.
            self._retry_in = DIRTY_CHECKOUT_RETRY_S
            return False
        if not batch:
            return False
        if solo:
            await self._one_for_approval(batch[0])
            return True
        await self._land_batch(batch)
        return True

    def _recover_testing(self) -> None:
        """MRs left `testing` by a round that died (or an orchestrator that did) go back.

        Only the lease holder gets here (the writes are fenced), so an MR still `testing` is
        nobody's: the steward that was checking it is gone. If that steward died between moving
        the target and recording it, its candidate is on the target: it is recorded as merged
        with the checks it had passed (saved on the MR before landing).
        """
        for mr in self.store.list_merge_requests(MergeStatus.TESTING):
            if mr.candidate_commit and is_ancestor(
                self.root, mr.candidate_commit, self.landing_target.ref
            ):
                try:
                    with self.store.transaction(fence=self.fence):
                        record_merged(
                            self.store, [mr], commit=mr.candidate_commit, checks=mr.checks
                        )
                except InvalidTransitionError as exc:
                    log.warning("could not record the landing of %s: %s", mr.id, exc)
                    continue
                self.note(f"{mr.id} had landed at {mr.candidate_commit[:10]} before a crash")
                continue
            self._transition_mr(
                mr.id, MrEvent.REQUEUE, reason="its check was interrupted; checking it again"
            )

    # -- landing -------------------------------------------------------------------------------

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
        return not self._blockers_waiting(entry.task.id, {e.task.id for e in ahead})

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

    async def _check_and_land(self, entries: list[Entry], base: str, commit: str) -> Outcome:
        """Check ``commit`` (built on ``base``) and land it, or hold it for approval."""
        taken: list[Entry] = []
        for entry in entries:
            try:
                self.store.transition_merge_request(
                    entry.mr.id, MrEvent.CHECK, candidate_commit=commit, fence=self.fence
                )
            except InvalidTransitionError:  # rejected by a human meanwhile
                for other in taken:
                    self._requeue(other, f"{entry.mr.id} left the batch; rebuilding")
                return "requeued"
            taken.append(entry)
        verdict = await self._verify(commit, retry=len(entries) == 1, entries=entries)
        if not verdict.ok:
            if len(entries) == 1:
                self._test_failed(entries[0], verdict.runs)
            else:
                for entry in entries:
                    self._transition_mr(entry.mr.id, MrEvent.REQUEUE, checks=verdict.runs)
            return "failed"
        if verdict.flaky:
            self.note(
                f"{', '.join(e.mr.id for e in entries)}: `{verdict.flaky[0]}` failed once and "
                "passed on the retry (recorded as flaky)"
            )
        protected = self._protected_changes(entries[0]) if len(entries) == 1 else []
        if not self.config.agents.steward.autoMerge or protected:
            entry = entries[0]
            if self.store.get_merge_request(entry.mr.id).approved_at is None:
                why = (
                    f"it changes protected paths ({', '.join(protected[:5])}): a person approves "
                    "changes to the gate itself"
                    if protected
                    else None
                )
                self._transition_mr(
                    entry.mr.id, MrEvent.AWAIT_APPROVAL, checks=verdict.runs, reason=why
                )
                self.note(
                    f"{entry.mr.id} passed its checks and waits for approval"
                    + (f": {why}" if why else "")
                )
                return "awaiting"
        return await self._land(entries, base, commit, verdict.runs)

    async def _verify(self, commit: str, *, retry: bool, entries: Sequence[Entry] = ()) -> Verdict:
        """Check ``commit``; with ``retry``, a failure counts only if it repeats on a freshly
        cleaned checkout. A pass on the retry is recorded as a flaky run of that command."""
        first = await self._checks(commit)
        verdict = judge(first)
        if retry and not verdict.ok:
            verdict = judge(first, await self._checks(commit))
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

    async def _land(
        self, entries: list[Entry], base: str, commit: str, runs: list[CheckRun]
    ) -> Outcome:
        # The checks passed: keep them on the MRs, so a crash right after the ref moves is
        # recorded on restart with the right commit and its checks.
        for entry in entries:
            self.store.update_merge_request(entry.mr.id, checks=runs)
        mrs = [self.store.get_merge_request(e.mr.id) for e in entries]
        try:
            await to_thread.run_sync(
                lambda: land_merge_requests(
                    self.store,
                    self.root,
                    self.config,
                    self.landing_target,
                    mrs,
                    candidate=commit,
                    base=base,
                    checks=runs,
                    fence=self.fence,
                    message=f"stoneforge: land {', '.join(e.mr.id for e in entries)}",
                )
            )
        except InvalidTransitionError as exc:  # cancelled or re-dispatched while it was checked
            for entry in entries:
                self._requeue(entry, f"not landed: {exc}")
            return "requeued"
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
        except PushRefused as exc:
            # Not the task's fault and not ours to retry: a person has to look (a hook, rights).
            reason = f"not landed: {exc}"
            for entry in entries:
                self._transition_mr(entry.mr.id, MrEvent.FAIL_CHECKS, reason=reason)
                self._send_back(
                    entry,
                    f"{reason}. The work is on branch {entry.mr.branch}; retry the task once "
                    "the remote accepts it.",
                    fail=True,
                )
            self.note(f"{', '.join(e.mr.id for e in entries)} {reason}")
            return "failed"
        self.note(f"landed {', '.join(e.mr.id for e in entries)} on {self.target} at {commit[:10]}")
        self.on_landed()
        return "landed"

    async def _already_on_target(self, entries: list[Entry]) -> None:
        """Branches that bring nothing new: merged only if the task's own commits are on the
        target; otherwise (an empty or rewound branch) the MR is refused and the task goes back."""
        tip = await self._tip()
        for entry in entries:
            head = entry.mr.head_commit
            on_target = head is not None and await to_thread.run_sync(
                lambda head=head: is_ancestor(self.root, head, self.landing_target.ref)
            )
            if not on_target:
                reason = (
                    f"its branch {entry.mr.branch} holds nothing that {self.target} lacks, and "
                    "the commits recorded for the task are not on it"
                )
                self._reject(entry.mr, reason)
                self._send_back(
                    entry,
                    f"Your merge request {entry.mr.id} was not merged: {reason}. Commit your "
                    f"work on {entry.mr.branch}.",
                )
                continue
            try:
                with self.store.transaction(fence=self.fence):
                    record_merged(self.store, [entry.mr], commit=tip, checks=[])
            except InvalidTransitionError as exc:
                log.info("%s not recorded as merged: %s", entry.mr.id, exc)
                continue
            await to_thread.run_sync(
                lambda entry=entry: remove_merged_worktrees(
                    self.store,
                    self.root,
                    self.config,
                    self.landing_target,
                    [entry.mr],
                    fence=self.fence,
                )
            )
            self.note(f"{entry.mr.id}: its commits were already on {self.target}")
        self.on_landed()

    async def _checks(self, commit: str) -> list[CheckRun]:
        """Run the checks on a fresh checkout of ``commit``; each in its own process group,
        recorded in this steward's run file while it runs, killed at once by ``stop()`` (which
        raises ChecksStopped here) or by cancelling the round."""
        steward = self.config.agents.steward
        commands = self.config.merge.checks if steward.runChecks else []
        if not commands:
            return []
        path = await self._fresh_checkout(commit)
        setup = self.config.worktree
        if setup.setupChecks and (setup.setup or setup.copyFiles):
            # The same set-up as a task checkout, on each freshly cleaned candidate; a failing
            # set-up command fails the candidate like a check.
            await to_thread.run_sync(lambda: copy_untracked(self.root, path, setup.copyFiles))
            commands = [*setup.setup, *commands]
        registry = self._checks_registry
        with anyio.CancelScope() as scope:
            self._check_scope = scope
            if self._stopped:
                scope.cancel()
            try:
                runs = await run_checks(
                    commands,
                    path,
                    self.config.merge.checkTimeoutS,
                    quarantine=self.config.merge.quarantine,
                    marker=self.id,
                    on_start=lambda command, pgid: registry.check_started(pgid, command, commit),
                )
            finally:
                self._check_scope = None
                registry.check_ended()
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

    async def _fresh_checkout(self, commit: str) -> Path:
        """This steward's check checkout at ``commit``, exactly as committed (`git clean -ffdx`).

        The first time, this steward claims its checkout and clears up after stewards whose
        process is gone: their checks are killed before their checkouts are removed.
        """
        await self._claim_checkout()
        path = self._worktree_path()
        await to_thread.run_sync(lambda: checkout_detached(self.root, path, commit))
        return path

    def _requeue(self, entry: Entry, reason: str) -> None:
        self._transition_mr(entry.mr.id, MrEvent.REQUEUE, reason=reason)

    def _transition_mr(self, mr_id: str, event: MrEvent, **fields: object) -> bool:
        """A fenced MR transition; False (logged) when the MR moved on meanwhile."""
        try:
            self.store.transition_merge_request(mr_id, event, fence=self.fence, **fields)
        except InvalidTransitionError as exc:
            log.info("%s: %s", mr_id, exc)
            return False
        return True

    def _reject(self, mr: MergeRequest, reason: str) -> None:
        if self._transition_mr(mr.id, MrEvent.REJECT, reason=reason):
            self.note(f"{mr.id} dropped: {reason}")

    def _test_failed(self, entry: Entry, runs: list[CheckRun]) -> None:
        failing = next((r for r in runs if blocks(r)), runs[-1])  # not a quarantined one
        code = "timed out" if failing.exit_code is None else f"exit {failing.exit_code}"
        reason = f"check `{failing.command}` failed ({code}), also on a retry"
        if not self._transition_mr(entry.mr.id, MrEvent.FAIL_CHECKS, checks=runs, reason=reason):
            return
        self.note(f"{entry.mr.id} ({entry.task.id}) failed its checks: {reason}")
        note = (
            f"The merge queue checked the merge of your branch with {self.target} and "
            f"{reason}. Fix it on your branch. Output:\n{failing.output_tail[-2500:]}"
        )
        self._send_back(entry, note)

    def _send_back(self, entry: Entry, note: str, *, fail: bool = False) -> None:
        """Return the MR's task to a worker, or fail it when its attempts are used up.

        Only the attempt that made the MR is sent back: a task cancelled or re-dispatched since
        is left as it is.
        """
        task = self.store.get_task(entry.task.id)
        exhausted = fail or task.attempts >= self.config.orchestrator.maxAttempts
        event = TaskEvent.FAIL if exhausted else TaskEvent.SEND_BACK
        try:
            self.store.transition_task(
                task.id, event, attempt=entry.mr.attempt, fence=self.fence, note=note
            )
        except InvalidTransitionError as exc:  # cancelled meanwhile: leave it so
            log.info("%s not sent back: %s", task.id, exc)
            return
        self.on_landed()  # the dispatcher should look again

    def _branch_gone(self, entry: Entry) -> None:
        reason = f"its branch {entry.mr.branch} no longer exists"
        self._reject(entry.mr, reason)
        self._send_back(
            entry,
            f"Your merge request {entry.mr.id} could not be merged: {reason}. Redo the work "
            "on your branch.",
        )

    # -- approval (autoMerge: false) -----------------------------------------------------------

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

    # -- the conflict ladder -------------------------------------------------------------------

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
            if len(crashes) > RESOLVER_RETRIES:
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
        hold = min(RESOLVER_HOLD_S * 2**times, RESOLVER_HOLD_MAX_S)
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

    async def _agent_resolve(
        self, entry: Entry, path: Path, base: str, files: list[str]
    ) -> str | None | ResolverCrashed:
        """The agent's merge commit; None when it completed but the conflict is still there;
        ResolverCrashed when the session did not complete (crashed, hung, failed to start).
        Raises ResolverInterrupted when the orchestrator stops it (or is stopping)."""
        if self._stopped:
            raise ResolverInterrupted(
                "not starting the steward agent: the orchestrator is stopping"
            )
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
            claude_setup=claude_setup.for_role(
                self.root,
                inherit=self.config.agents.claudeSetup == "inherit",
                mcp_servers=steward.mcpServers == "inherit",
            ),
        )

        def on_update(stats: TokenStats) -> None:
            record_token_stats(self.store, session.id, stats)

        async def on_start(live: AgentSession) -> None:
            self._agent = live
            if live.pid:  # recorded at spawn, so recovery finds the CLI even if we die now
                self.store.update_session(session.id, pid=live.pid)
            if self._stopped:
                await live.stop("stoneforge: the orchestrator is stopping")

        def end(status: SessionStatus, error: str | None, **fields: object) -> None:
            self.store.update_session(
                session.id, status=status, ended_at=utcnow(), error=error, **fields
            )

        self._agent_session_id = session.id
        try:
            outcome = await run_session(self.provider, spec, on_update=on_update, on_start=on_start)
        except anyio.get_cancelled_exc_class():  # the orchestrator stopped under it
            end(SessionStatus.FAILED, "stopped (the orchestrator stopped)")
            raise
        except Exception as exc:  # the agent could not even start: a crash, tried again
            log.exception("steward agent session for %s failed", entry.mr.id)
            error = f"{type(exc).__name__}: {exc}"
            end(SessionStatus.CRASHED, error)
            return ResolverCrashed(f"could not start ({error})")
        finally:
            self._agent, self._agent_session_id = None, None
        ids = {"pid": outcome.pid, "provider_session_id": outcome.provider_session_id}
        if outcome.status == "stopped" or (self._stopped and outcome.status != "completed"):
            end(SessionStatus.FAILED, "stopped (the orchestrator is stopping)", **ids)
            raise ResolverInterrupted("the steward agent was stopped; the merge waits in the queue")
        if outcome.status != "completed":
            end(SessionStatus.CRASHED, outcome.error, **ids)
            return ResolverCrashed(f"ended {outcome.status} ({outcome.error or 'no result'})")
        end(SessionStatus.COMPLETED, outcome.error, **ids)
        remaining = await to_thread.run_sync(lambda: self._markers_left(path, files))
        if remaining:
            self.note(f"{entry.mr.id}: conflict markers remain in {', '.join(remaining)}")
            return None
        message = f"Merge task {entry.task.id}: {entry.task.title} (conflicts resolved by steward)"
        return await to_thread.run_sync(lambda: self._conclude(path, base, entry, message, files))

    def _conclude(
        self, path: Path, base: str, entry: Entry, message: str, files: Sequence[str]
    ) -> str | None:
        """Commit the agent's resolution as the merge commit (first parent ``base``).

        Refused (None) unless it changes only the files that conflicted: everything else must be
        exactly git's own merge of the two sides.
        """
        commit = commit_all(path, message)
        head = run_git(["rev-parse", "HEAD"], path).stdout.strip()
        if commit is None and head != base:
            commit = head  # the agent committed the merge itself
        if commit is None:
            return None
        parents = run_git(["rev-list", "--parents", "-n", "1", commit], path).stdout.split()[1:]
        tip = resolve_commit(self.root, entry.mr.branch)
        if parents != [base, tip]:
            log.warning("steward merge %s has parents %s, not [%s, %s]", commit, parents, base, tip)
            return None
        extra = self._changed_beyond(base, tip, commit, files)
        if extra:
            self.note(
                f"{entry.mr.id}: the steward agent's resolution also changed {', '.join(extra)}, "
                "which did not conflict; refused"
            )
            return None
        return commit

    def _changed_beyond(
        self, base: str, tip: str, commit: str, conflicted: Sequence[str]
    ) -> list[str]:
        """Paths where ``commit`` differs from git's own merge of ``base`` and ``tip``, other than
        the ``conflicted`` ones (whose merge holds conflict markers the agent had to resolve)."""
        merged = run_git(["merge-tree", "--write-tree", base, tip], self.root, check=False)
        tree = merged.stdout.split("\n", 1)[0].strip()
        changed = run_git(["diff", "--name-only", "--no-renames", tree, commit], self.root)
        return [name for name in changed.stdout.split() if name not in set(conflicted)]

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
            result = await to_thread.run_sync(
                lambda: forecast(self.root, self.landing_target.ref, branches)
            )
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
        return self._checks_registry.checkout

    async def _tip(self) -> str:
        return await to_thread.run_sync(self.landing_target.tip)

    def _branch_names(self) -> set[str]:
        out = run_git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], self.root)
        return set(out.stdout.split())

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

    @property
    def landing_paused(self) -> LandingPause | None:
        """Why landing waits for the user's checkout (None: it does not), for the live view."""
        return self.pause.current


def protected(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``patterns`` or inside one that names a directory."""
    for pattern in patterns:
        name = pattern.rstrip("/")
        if path == name or path.startswith(name + "/"):
            return True
    return False


def first_parent(root: Path, commit: str) -> str:
    return run_git(["rev-parse", f"{commit}^1"], root).stdout.strip()
