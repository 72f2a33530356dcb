"""The steward's review: a read-only agent session judges each merge request before its checks.

With `agents.steward.review` on, a finished task's merge request starts `reviewing`. The
:class:`Reviewer` (one per orchestrator, beside the steward) takes those one at a time, highest
effective priority first, and runs :func:`review_merge_request`: a steward session with the
reviewer profile (Read, Glob, Grep and reading shell commands only; contained, its checkout is
mounted read-only) in a checkout of the branch head, with the task, its plan and the diff of the
task's own commits in its prompt. It answers through `mcp__stoneforge__submit_review`.

- approve: the MR goes on to `pending`, where the steward's queue (batching, look-ahead) takes
  it as before. The steward never sees an MR that is still `reviewing`, so a review runs while
  the steward checks and lands MRs already reviewed, and never holds up that queue.
- request_changes: the MR is closed (`rejected` by `request_changes`) and the task goes back to
  a worker with the comments in its note, its attempt given back: a review round is not a
  failed attempt. The ``maxReviewRounds``-th review of a task that asks for changes instead
  leaves the MR waiting for a person in `awaiting_approval`, with the reason.
- no verdict (the session ended, crashed or would not start without a valid `submit_review`):
  tried once more; then the MR waits for a person in `awaiting_approval`, with the reason.
- the provider failed the session (an outage, a rate limit): no try is spent; the review waits
  (the provider's backoff, doubling) and runs again.
- stopped with the orchestrator: nothing is decided; the MR stays `reviewing` for the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    AgentSession,
    Role,
    StoneforgeTools,
    build_spec,
    default_config_dir,
    kill_tree,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.agents.mcp_tools import SUBMIT_REVIEW, ReviewSubmission, ToolReply
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidTransitionError, LeaseLostError
from stoneforge.git.repo import resolve_commit, run_git
from stoneforge.git.worktrees import checkout_detached
from stoneforge.lifecycle import MrEvent, TaskEvent
from stoneforge.models import (
    MergeRequest,
    MergeStatus,
    Review,
    ReviewComment,
    ReviewVerdict,
    SessionRole,
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.prompts import render_review, review_feedback, reviewer_prompt
from stoneforge.orchestrator.recovery import processes_of_session
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.store import Fence, Store

log = logging.getLogger("stoneforge.review")

#: The reviewer's checkout, under `orchestrator.worktreeDir` (one reviewer per orchestrator).
REVIEW_CHECKOUT = "_review"
#: A review session without a verdict is tried this many more times before a person decides.
REVIEW_RETRIES = 1


class ReviewInterrupted(Exception):  # noqa: N818 - a signal, not an error
    """The review session was stopped with the orchestrator: no verdict, nothing decided."""


@dataclass
class ReviewOutcome:
    """What one review session gave: a verdict, or why there is none."""

    session_id: str
    head: str
    verdict: ReviewVerdict | None = None
    summary: str = ""
    comments: list[ReviewComment] = field(default_factory=list)
    #: Why there is no verdict (the session ended without one, crashed, could not start).
    error: str | None = None
    #: The provider failed the session (an outage, a rate limit): not the review's try.
    provider_fault: str | None = None


def changed_files(root: Path, base: str, head: str) -> list[str]:
    listing = run_git(["diff", "--name-only", "--no-renames", "-z", base, head], root)
    return [name for name in listing.stdout.split("\0") if name]


def comment_problems(
    root: Path, head: str, files: list[str], submission: ReviewSubmission
) -> list[str]:
    """Comments that do not point into the change: a file it does not touch, a line past the
    end of the file's new version."""
    problems = []
    for n, comment in enumerate(submission.comments, 1):
        if comment.path not in files:
            shown = ", ".join(files[:20]) + (" ..." if len(files) > 20 else "")
            problems.append(
                f"comments[{n}].path: {comment.path!r} is not a file this change touches "
                f"(it touches: {shown})"
            )
            continue
        if comment.line is None:
            continue
        blob = run_git(["show", f"{head}:{comment.path}"], root, check=False)
        if blob.returncode != 0:
            continue  # deleted by the change: no new version to point into
        lines = len(blob.stdout.splitlines())
        if comment.line > max(lines, 1):
            problems.append(
                f"comments[{n}].line: {comment.path} has {lines} lines in the change's new "
                f"version; line {comment.line} is past its end"
            )
    return problems


async def review_merge_request(
    *,
    root: Path,
    config: StoneforgeConfig,
    store: Store,
    provider: AgentProvider,
    mr: MergeRequest,
    task: Task,
    target: str,
    agent_env: dict[str, str],
    checkout: Path,
    on_start: Callable[[AgentSession | None, str | None], None] = lambda live, sid: None,
    stopping: Callable[[], bool] = lambda: False,
) -> ReviewOutcome:
    """One read-only review session of ``mr``; raises ReviewInterrupted when it is stopped.

    ``on_start`` hears of the session's row id and then of its live CLI (and of None when it
    ends), so the caller can stop or kill it.
    """
    head = mr.head_commit or await to_thread.run_sync(lambda: resolve_commit(root, mr.branch))

    def prepare() -> tuple[str, str, list[str]]:
        # A stacked branch is reviewed for its own changes, not its blockers'.
        base = mr.base_commit or run_git(["merge-base", target, head], root).stdout.strip()
        diff = run_git(["diff", "--no-color", "--no-ext-diff", base, head], root).stdout
        checkout_detached(root, checkout, head)
        return base, diff, changed_files(root, base, head)

    base, diff, files = await to_thread.run_sync(prepare)
    steward = config.agents.steward
    asked = sum(
        1 for r in store.list_reviews(task_id=task.id) if r.verdict == ReviewVerdict.REQUEST_CHANGES
    )
    plan = store.get_plan(task.plan_id) if task.plan_id else None
    plan_titles = (
        [f"{t.id} {t.title} ({t.status.value})" for t in store.list_tasks(plan_id=plan.id)][:30]
        if plan is not None
        else []
    )
    prompt = reviewer_prompt(
        task,
        mr_id=mr.id,
        branch=mr.branch,
        target=target,
        base=base,
        head=head,
        diff=diff,
        round_=len(store.list_reviews(task_id=task.id)) + 1,
        changes_left=max(steward.maxReviewRounds - asked, 1),
        plan=plan,
        plan_titles=[t for t in plan_titles if not t.startswith(f"{task.id} ")],
        earlier=store.list_reviews(task_id=task.id),
    )
    session = store.start_session(task.id, SessionRole.STEWARD)
    outcome = ReviewOutcome(session_id=session.id, head=head)

    def on_submit(submission: ReviewSubmission) -> ToolReply | None:
        problems = comment_problems(root, head, files, submission)
        if problems:
            return ToolReply(
                "The review was not recorded:\n- " + "\n- ".join(problems) + "\nFix the "
                "comments and call submit_review again.",
                is_error=True,
            )
        outcome.verdict = ReviewVerdict(submission.verdict)
        outcome.summary = submission.summary
        outcome.comments = [ReviewComment(**c.model_dump()) for c in submission.comments]
        return None

    tools = StoneforgeTools(on_submit_review=on_submit, enabled=(SUBMIT_REVIEW,))
    spec = build_spec(
        Role.REVIEWER,
        cwd=checkout,
        prompt=prompt,
        config_dir=default_config_dir(root, session.id),
        repo_root=root,
        target_branch=target,
        model=steward.model,
        mcp=tools,
        env=agent_env,
        max_turns=steward.maxTurns,
        idle_timeout_s=steward.idleTimeoutS,
    )

    def on_update(stats: TokenStats) -> None:
        record_token_stats(store, session.id, stats)

    async def started(live: AgentSession) -> None:
        if live.pid:  # recorded at spawn, so recovery finds the CLI even if we die now
            store.update_session(session.id, pid=live.pid)
        on_start(live, session.id)
        if stopping():  # the orchestrator began stopping while the CLI came up
            await live.stop("stoneforge: the orchestrator is stopping")

    def end(status: SessionStatus, error: str | None, **fields: object) -> None:
        store.update_session(session.id, status=status, ended_at=utcnow(), error=error, **fields)

    on_start(None, session.id)
    try:
        ran = await run_session(provider, spec, on_update=on_update, on_start=started)
    except anyio.get_cancelled_exc_class():
        end(SessionStatus.FAILED, "stopped (the orchestrator stopped)")
        raise
    except Exception as exc:  # the CLI could not even start
        log.exception("review session for %s failed to start", mr.id)
        outcome.error = f"could not start ({type(exc).__name__}: {exc})"
        end(SessionStatus.CRASHED, outcome.error)
        return outcome
    finally:
        on_start(None, None)
    ids = {"pid": ran.pid, "provider_session_id": ran.provider_session_id}
    if ran.status == "stopped":
        end(SessionStatus.FAILED, "stopped (the orchestrator is stopping)", **ids)
        raise ReviewInterrupted(f"the review of {mr.id} was stopped; it waits for the next start")
    fault = ran.provider_fault
    if outcome.verdict is None and fault is not None:
        outcome.provider_fault = fault.label
        outcome.error = f"the provider failed the session ({fault.label})"
        end(SessionStatus.FAILED, outcome.error, **ids)
        return outcome
    if outcome.verdict is None:
        outcome.error = f"the session ended {ran.status} without a verdict" + (
            f" ({ran.error})" if ran.error else ""
        )
        status = SessionStatus.COMPLETED if ran.status == "completed" else SessionStatus.CRASHED
        end(status, outcome.error, **ids)
        return outcome
    end(SessionStatus.COMPLETED, None, **ids)
    return outcome


class Reviewer:
    """Reviews `reviewing` merge requests one at a time, beside the steward's queue."""

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
        on_reviewed: Callable[[], None],
        fence: Fence | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.provider = provider
        self.target = target
        self.agent_env = agent_env
        self.note = note
        #: Told after every decision (the steward and the dispatcher look again).
        self.on_reviewed = on_reviewed
        self.fence = fence
        #: The merge request under review now, for the live view.
        self.current: str | None = None
        self._wake = anyio.Event()
        self._stopped = False
        self._live: AgentSession | None = None
        self._session_id: str | None = None
        #: After a provider fault: look again this many seconds later (doubling while it lasts).
        self._retry_in: float | None = None
        self._provider_waits = 0
        self.checkout = config.orchestrator.worktree_dir(root) / REVIEW_CHECKOUT

    # -- control -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Start no review; a running review session is interrupted (its MR stays reviewing)."""
        self._stopped = True
        if self._live is not None:
            await self._live.stop("stoneforge: the orchestrator is stopping")
        self.wake()

    def kill(self) -> None:
        self._stopped = True
        if self._live is not None:
            self._live.kill()
        if self._session_id is not None:
            for pid in processes_of_session(self.root, self._session_id):
                kill_tree(pid)

    async def run(self) -> None:
        while not self._stopped:
            self._wake = anyio.Event()
            if self._retry_in is not None:  # the provider failed the last review session
                deadline = anyio.current_time() + self._retry_in
                self._retry_in = None
                while not self._stopped and anyio.current_time() < deadline:
                    with anyio.move_on_after(deadline - anyio.current_time()):
                        await self._wake.wait()  # only stop() ends the wait early
                    self._wake = anyio.Event()
                if self._stopped:
                    return
            try:
                progressed = await self.round()
            except LeaseLostError as exc:
                log.error("reviewer stopping: %s", exc)
                self.note(f"reviewer stopped: {exc}")
                return
            except Exception:
                log.exception("review round failed")
                progressed = False
            if not progressed and self._retry_in is None:
                await self._wake.wait()

    # -- one review ------------------------------------------------------------------------------

    def queue(self) -> list[tuple[MergeRequest, Task]]:
        """Merge requests waiting for review, highest effective priority first, then oldest.

        One whose task moved on (cancelled, failed, dispatched again) can never land: rejected.
        """
        waiting = self.store.list_merge_requests(MergeStatus.REVIEWING)
        if not waiting:
            return []
        entries = []
        for mr in waiting:
            task = self.store.get_task(mr.task_id)
            if task.status in (TaskStatus.CANCELLED, TaskStatus.FAILED, TaskStatus.MERGED):
                self._decide(mr, MrEvent.REJECT, f"not reviewed: its task is {task.status.value}")
            elif mr.attempt is not None and mr.attempt != task.dispatches:
                self._decide(
                    mr, MrEvent.REJECT, f"superseded: task {task.id} was dispatched again since"
                )
            elif task.status == TaskStatus.REVIEW:
                entries.append((mr, task))
        effective = self.store.graph().effective_priorities() if entries else {}
        entries.sort(key=lambda e: (effective.get(e[1].id, 3), e[0].created_at))
        return entries

    async def round(self) -> bool:
        """Review the head of the queue; False when there was nothing to review."""
        if self._stopped:
            return False
        queue = await to_thread.run_sync(self.queue)
        if not queue:
            return False
        if not self.config.agents.steward.review:
            # Review was turned off since these were made: they go on to the checks unreviewed.
            for mr, _ in queue:
                self._decide(mr, MrEvent.PASS_REVIEW, "not reviewed: agents.steward.review is off")
            return True
        mr, task = queue[0]
        self.store.verify_fence(self.fence)  # a deposed orchestrator starts no review session
        self.current = mr.id
        try:
            await self._review(mr, task)
        finally:
            self.current = None
        return True

    async def _review(self, mr: MergeRequest, task: Task) -> None:
        errors: list[str] = []
        while True:
            self.note(
                f"{mr.id} ({task.id}): the steward reviews the change"
                + (f" (try {len(errors) + 1})" if errors else "")
            )
            try:
                outcome = await review_merge_request(
                    root=self.root,
                    config=self.config,
                    store=self.store,
                    provider=self.provider,
                    mr=mr,
                    task=task,
                    target=self.target,
                    agent_env=self.agent_env,
                    checkout=self.checkout,
                    on_start=self._on_start,
                    stopping=lambda: self._stopped,
                )
            except ReviewInterrupted as why:
                self.note(f"{mr.id}: {why}")
                return
            except (LeaseLostError, anyio.get_cancelled_exc_class()):
                raise
            except Exception as exc:  # e.g. git could not prepare it: counted like no verdict
                log.exception("review of %s failed", mr.id)
                outcome = ReviewOutcome(
                    session_id="", head="", error=f"{type(exc).__name__}: {exc}"
                )
            if outcome.verdict is not None:
                break
            if outcome.provider_fault is not None:
                # Provider health is not the review's: it waits, and no try is spent.
                orchestrator = self.config.orchestrator
                self._provider_waits += 1
                hold = min(
                    orchestrator.providerBackoffS * 2 ** (self._provider_waits - 1),
                    orchestrator.providerBackoffMaxS,
                )
                self._retry_in = hold
                self.note(f"{mr.id}: the review waits for the provider ({outcome.provider_fault})")
                return
            self._provider_waits = 0
            errors.append(outcome.error or "no verdict")
            if self._stopped:
                return  # nothing decided: reviewed again at the next start
            if len(errors) > REVIEW_RETRIES:
                reason = (
                    f"the steward's review gave no verdict in {len(errors)} tries (last: "
                    f"{errors[-1]}); a person decides: `sf merge approve {mr.id}` sends it on to "
                    f"the checks, `sf merge reject {mr.id} --reason ...` back to a worker"
                )
                self._decide(mr, MrEvent.AWAIT_APPROVAL, reason)
                return
            self.note(f"{mr.id}: the review gave no verdict ({errors[-1]}); trying again")
        self._apply(mr, task, outcome)

    def _on_start(self, live: AgentSession | None, session_id: str | None) -> None:
        self._live = live
        if session_id is not None or live is None:
            self._session_id = session_id

    def _apply(self, mr: MergeRequest, task: Task, outcome: ReviewOutcome) -> None:
        """Record the verdict and move the MR (and, for changes, the task) in one transaction."""
        assert outcome.verdict is not None
        steward = self.config.agents.steward
        try:
            with self.store.transaction(fence=self.fence):
                review = self.store.add_review(
                    mr.id,
                    outcome.verdict,
                    outcome.summary,
                    outcome.comments,
                    session_id=outcome.session_id,
                    head_commit=outcome.head,
                )
                if outcome.verdict == ReviewVerdict.APPROVE:
                    self.store.transition_merge_request(
                        mr.id, MrEvent.PASS_REVIEW, fence=self.fence, reason=None
                    )
                    said = f"{mr.id}: the review approved it; on to the checks"
                else:
                    asked = sum(
                        1
                        for r in self.store.list_reviews(task_id=task.id)
                        if r.verdict == ReviewVerdict.REQUEST_CHANGES
                    )
                    said = self._changes_requested(mr, task, review, asked, steward.maxReviewRounds)
        except InvalidTransitionError as exc:  # cancelled or rejected meanwhile: not ours
            log.info("review of %s not applied: %s", mr.id, exc)
            return
        self.note(said)
        self.on_reviewed()

    def _changes_requested(
        self, mr: MergeRequest, task: Task, review: Review, asked: int, max_rounds: int
    ) -> str:
        """Inside the transaction of ``_apply``: back to a worker, or to a person."""
        if asked >= max_rounds:
            reason = (
                f"the steward's review asked for changes {asked} times (agents.steward."
                f"maxReviewRounds is {max_rounds}); a person decides: `sf merge approve {mr.id}` "
                f"sends it on to the checks, `sf merge reject {mr.id} --reason ...` back to a "
                f"worker. Last review: {render_review(review)}"
            )
            self.store.transition_merge_request(
                mr.id, MrEvent.AWAIT_APPROVAL, fence=self.fence, reason=reason
            )
            return (
                f"{mr.id}: the review still asks for changes after {asked} rounds; a person decides"
            )
        summary = review.summary[:300]
        self.store.transition_merge_request(
            mr.id,
            MrEvent.REQUEST_CHANGES,
            fence=self.fence,
            reason=f"the steward's review asked for changes (round {review.round}): {summary}",
        )
        self.store.transition_task(
            task.id,
            TaskEvent.SEND_BACK,
            attempt=mr.attempt,
            fence=self.fence,
            give_back_attempt=True,  # a review round is not a failed attempt
            note=review_feedback(review, mr.id, asked, max_rounds),
            kind="task.changes_requested",
        )
        return (
            f"{mr.id}: the review asked for {len(review.comments)} change(s); {task.id} goes "
            "back to a worker"
        )

    def _decide(self, mr: MergeRequest, event: MrEvent, reason: str) -> None:
        try:
            self.store.transition_merge_request(mr.id, event, fence=self.fence, reason=reason)
        except InvalidTransitionError as exc:
            log.info("%s: %s", mr.id, exc)
            return
        self.note(f"{mr.id}: {reason}")
        self.on_reviewed()
