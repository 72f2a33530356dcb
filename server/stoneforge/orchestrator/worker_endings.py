"""How a worker run ends, and publishing its work: completed (a merge request), stopped,
crashed, the provider failed, or a failed attempt; the branch fetched back after each commit."""

from __future__ import annotations

import logging

from anyio import to_thread

from stoneforge.agents.provider_faults import ProviderFault
from stoneforge.errors import InvalidTransitionError
from stoneforge.git.errors import GitLayerError
from stoneforge.git.remote import push_branch
from stoneforge.git.repo import full_branch_ref, run_git
from stoneforge.git.snapshot import checked_out_branch
from stoneforge.git.stacking import keep_work
from stoneforge.git.task_clone import commit_leftovers, publish, save_head_of_task
from stoneforge.git.task_clone import snapshot as save_snapshot
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import (
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.worker_base import (
    BLOCKER_FAILED,
    RunResult,
    WorkerBase,
)

log = logging.getLogger("stoneforge.worker")


class EndingsMixin(WorkerBase):
    """How a worker run ends, and publishing its work."""

    async def _commit_leftovers(self, message: str) -> str | None:
        commit = await to_thread.run_sync(
            lambda: commit_leftovers(self.root, self.worktree, message)
        )
        await self._publish()
        return commit

    async def _publish(self) -> None:
        """Fetch the branch (and recovery refs) from the task's clone: the repository sees only
        what was published. With `merge.pushBranches` the branch then goes to the remote too
        (people can look at it, and the work survives the loss of this machine); a failed push
        is noted, not fatal."""
        await to_thread.run_sync(
            lambda: publish(self.root, self.worktree, self.branch, self.task.id)
        )
        remote = self.config.merge.remote
        if not (remote and self.config.merge.pushBranches):
            return
        try:
            await to_thread.run_sync(lambda: push_branch(self.root, remote, self.branch))
        except GitLayerError as exc:
            log.warning("could not push %s to %s: %s", self.branch, remote, exc)
            self.store.record_event(
                "task.push_failed", "task", self.task.id, {"remote": remote, "error": str(exc)}
            )

    async def _completed(self, session_id: str, base: str) -> RunResult:
        """A session ended well: the task is complete when its branch holds work to land.

        The rule: the task branch is checked out in the worktree and holds commits the target
        lacks. Anything else (the agent switched to a branch of its own, detached HEAD, nothing
        committed) is a failed attempt whose work is kept in a recovery ref, never a merge.
        """
        leftover = await self._commit_leftovers(
            f"stoneforge: commit work session {session_id} left uncommitted"
        )
        wrong_branch = await to_thread.run_sync(self._restore_task_branch)
        if wrong_branch is not None:
            await self._publish()  # the recovery ref that keeps those commits
            self._end_session(session_id, SessionStatus.FAILED, wrong_branch)
            return self._fail_attempt(wrong_branch, retry=True)
        # A blocker landed or changed during the session: the branch follows it now.
        moved = await self._restack_own()
        if moved is not None:
            base = await self._own_base(None)
        count, head = await to_thread.run_sync(self._branch_progress)
        if count == 0:
            reason = moved or (
                f"the session ended without any commit on {self.branch} that {self.target} lacks"
            )
            self._end_session(session_id, SessionStatus.COMPLETED, reason)
            return self._fail_attempt(reason, retry=True)
        self._end_session(session_id, SessionStatus.COMPLETED, None)
        summary = self.summary or self.last_text or f"Work on {self.task.title}"
        details = await to_thread.run_sync(lambda: self._change_summary(base, summary))
        try:
            self.store.complete_task(
                self.task.id,
                attempt=self.attempt,
                branch=self.branch,
                head_commit=head,
                summary=details,
                fence=self.fence,
                review=self.config.agents.steward.review,
            )
        except InvalidTransitionError as exc:  # cancelled (or taken over) meanwhile: not ours
            log.info("task %s not completed: %s", self.task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(self.task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "completed"
        log.info(
            "task %s completed (%s commits%s)",
            self.task.id,
            count,
            ", leftovers committed" if leftover else "",
        )
        return RunResult(self.task.id, TaskStatus.REVIEW)

    def _restore_task_branch(self) -> str | None:
        """Put the worktree back on the task branch if the agent left it; say why it is a failure."""
        current = checked_out_branch(self.worktree)
        if current == self.branch:
            return None
        saved = save_head_of_task(self.root, self.worktree, self.task.id)
        run_git(["checkout", "--quiet", "--force", self.branch], self.worktree)
        where = f"branch {current}" if current else "a detached HEAD"
        return (
            f"the session left its work on {where} instead of the task branch {self.branch}; "
            f"those commits are kept at {saved.ref} (`git log {saved.ref}`), and the next attempt "
            f"must commit on {self.branch}"
        )

    def _branch_progress(self) -> tuple[int, str]:
        """Commits on the task branch that the target lacks, and the branch tip."""
        # Asked of the repository, which holds the published branch and the current target.
        head = run_git(["rev-parse", full_branch_ref(self.branch)], self.root).stdout.strip()
        ahead = run_git(["rev-list", "--count", f"{self.target}..{head}"], self.root)
        return int(ahead.stdout.strip()), head

    def _change_summary(self, base: str, summary: str) -> str:
        commits = run_git(["log", "--format=- %h %s", f"{base}..HEAD"], self.worktree).stdout
        stat = run_git(["diff", "--stat", base, "HEAD"], self.worktree).stdout
        return f"{summary.strip()}\n\nCommits:\n{commits.strip()}\n\nDiffstat:\n{stat.rstrip()}"

    async def _stopped(self, session_id: str | None) -> RunResult:
        commit = await self._commit_leftovers(
            f"stoneforge: work in progress of task {self.task.id}, saved at {self.stop_reason}"
            + (f" (session {session_id})" if session_id else "")
        )
        saved = f"; its work is saved as commit {commit[:12]}" if commit else ""
        if session_id is not None:
            self.store.update_session(
                session_id,
                status=SessionStatus.FAILED,
                ended_at=utcnow(),
                error=f"stopped ({self.stop_reason})" + saved,
            )
        if self.stop_reason == "cancelled":
            return RunResult(self.task.id, TaskStatus.CANCELLED, "cancelled")
        if self.stop_reason.startswith(BLOCKER_FAILED):  # back to waiting, its work kept
            return await self._blocker_failed(saved)
        # A shutdown is not the task's fault: the attempt does not count.
        self._requeue_without_cost(
            "The previous session was stopped when the orchestrator shut down"
            + saved
            + ". Continue from the branch as it is."
        )
        return RunResult(self.task.id, TaskStatus.OPEN, "stopped")

    async def _blocker_failed(self, saved: str) -> RunResult:
        """A blocker failed for good while this task ran on its branch: the task waits again
        (open, blocked), its work on its branch and at a recovery ref; no attempt spent."""
        kept = await to_thread.run_sync(
            lambda: keep_work(self.root, self.worktree, self.branch, self.task.id)
        )
        self._requeue_without_cost(
            f"{self.stop_reason}{saved}. Its work is on {self.branch} and kept at "
            f"{kept.ref}; it continues once the blocker is done."
        )
        self.slot.state = "waiting for a blocker"
        return RunResult(self.task.id, TaskStatus.OPEN, self.stop_reason)

    async def _crashed(
        self, session_id: str, status: str, error: str, fault: ProviderFault | None = None
    ) -> RunResult:
        snapshot = None
        try:
            snapshot = await to_thread.run_sync(
                lambda: save_snapshot(self.root, self.worktree, self.task.id, restore=True)
            )
        except Exception as exc:  # never let a failed snapshot hide the crash itself
            log.exception("could not snapshot %s", self.worktree)
            error += f" (and saving its uncommitted work failed: {exc})"
        session_status = SessionStatus.CRASHED if status == "crashed" else SessionStatus.FAILED
        self.store.update_session(session_id, status=session_status, ended_at=utcnow(), error=error)
        reason = f"session {session_id} {status}: {error}"
        if snapshot is not None:
            reason += (
                f". Its uncommitted work ({len(snapshot.files)} files) is saved at "
                f"{snapshot.ref}; see it with `git show --stat {snapshot.ref}` and bring it back "
                f"with `git checkout {snapshot.ref} -- <paths>` or "
                f"`git cherry-pick --no-commit {snapshot.ref}`"
            )
        if fault is not None:
            return self._wait_for_provider(reason, fault)
        return self._fail_attempt(reason, retry=True)

    def _wait_for_provider(self, reason: str, fault: ProviderFault) -> RunResult:
        """The provider failed the session: back to the queue with the attempt given back."""
        task = self.store.get_task(self.task.id)
        history = [line for line in (task.note or "").splitlines() if line.startswith("attempt ")]
        history.append(f"not counted as an attempt, the provider failed ({fault.label}): {reason}")
        try:
            self.store.transition_task(
                task.id,
                TaskEvent.WAIT_PROVIDER,
                attempt=self.attempt,
                fence=self.fence,
                note="\n".join(history),
            )
        except InvalidTransitionError as exc:
            log.info("task %s: provider wait not recorded: %s", task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "waiting for the provider"
        return RunResult(task.id, TaskStatus.OPEN, reason, provider_fault=fault)

    def _internal_error(self, exc: Exception, *, counted: bool) -> RunResult:
        """Stoneforge itself failed during the attempt (a bug, or git refusing for a moment):
        not the agent's doing, so the attempt is given back and the task tried again after the
        backoff, its checkout and commits as they are. A fault that keeps coming back
        (``counted``) is a failed attempt like any other, so it cannot loop for ever."""
        # One line in the task's attempt history (git's advice after its error is left out;
        # the log has the traceback).
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = f"internal error: {type(exc).__name__}: {first_line}"
        if counted:
            return self._fail_attempt(reason, retry=True)
        task = self.store.get_task(self.task.id)
        refused = self._requeue_without_cost(
            _with_attempt(task, f"attempt {task.attempts} (not counted, tried again): {reason}")
        )
        if refused is not None:
            self.slot.state = "cancelled"
            return RunResult(task.id, TaskStatus.CANCELLED, refused)
        self.slot.state = "requeued"
        return RunResult(task.id, TaskStatus.OPEN, reason, retry=True)

    def _fail_attempt(self, reason: str, *, retry: bool) -> RunResult:
        """Record a failed attempt: back to the queue, or `failed` after maxAttempts.

        Only this attempt's own task is touched: after a cancel (or a retry that started a newer
        attempt) the write is refused and the run simply ends.
        """
        task = self.store.get_task(self.task.id)
        exhausted = task.attempts >= self.config.orchestrator.maxAttempts or not retry
        event = TaskEvent.FAIL if exhausted else TaskEvent.REQUEUE
        try:
            self.store.transition_task(
                task.id,
                event,
                attempt=self.attempt,
                fence=self.fence,
                note=_with_attempt(task, f"attempt {task.attempts}: {reason}"),
            )
        except InvalidTransitionError as exc:
            log.info("task %s: attempt not recorded: %s", task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "failed" if exhausted else "requeued"
        if exhausted:
            return RunResult(task.id, TaskStatus.FAILED, reason)
        return RunResult(task.id, TaskStatus.OPEN, reason, retry=True)


def _with_attempt(task: Task, line: str) -> str:
    """The task's note as its attempt history (one `attempt ...` line each) with ``line`` added."""
    history = [kept for kept in (task.note or "").splitlines() if kept.startswith("attempt ")]
    return "\n".join([*history, line])
