"""One worker run: a task's attempt, from worktree to merge request, across context handoffs.

The rules that matter:
- A session that ends successfully with commits on its branch completes the task, whether or not
  the agent called `complete_task`; work it left uncommitted is committed for it.
- When a turn's context reaches ``handoffAtTokens`` the agent is asked for a handoff; its work is
  committed, the session ends as ``handed_off`` and a fresh session continues on the same branch.
- When the task's spending reaches its budget (`budgets.perTaskUsd` / `perTaskTokens`, or its own)
  the agent is asked for a handoff the same way; after it, the task waits in ``budget_exceeded``
  for a person, its work committed and the handoff kept.
- A session that crashes, hangs or fails keeps nothing in limbo: its uncommitted work goes to a
  recovery ref, the worktree returns to the last commit, and the task goes back to the queue
  (or to ``failed`` after ``maxAttempts``).
- A session the provider failed (529, 5xx, refused connection, rate limit, no credit) is not the
  task's fault: its work is saved the same way, but the task waits in the queue
  (``wait_provider``) with its attempt given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread

from stoneforge.agents import (
    AgentProvider,
    AgentSession,
    AssistantTurn,
    HandoffNote,
    Role,
    SessionOutcome,
    SessionStarted,
    StoneforgeTools,
    ToolResult,
    build_spec,
    claude_setup,
    default_config_dir,
    kill_tree,
    run_session,
)
from stoneforge.agents.accounting import TokenStats
from stoneforge.agents.events import AgentEvent
from stoneforge.agents.provider_faults import ProviderFault
from stoneforge.config import StoneforgeConfig
from stoneforge.errors import InvalidTransitionError
from stoneforge.git.errors import GitLayerError
from stoneforge.git.remote import push_branch
from stoneforge.git.repo import full_branch_ref, run_git
from stoneforge.git.slug import task_branch, worktree_path
from stoneforge.git.snapshot import checked_out_branch, save_head
from stoneforge.git.task_clone import commit_leftovers, ensure_task_clone, pool_for, publish
from stoneforge.git.task_clone import snapshot as save_snapshot
from stoneforge.lifecycle import TaskEvent
from stoneforge.models import (
    Handoff,
    SessionRole,
    SessionStatus,
    Task,
    TaskStatus,
    utcnow,
)
from stoneforge.orchestrator.budgets import task_over_budget
from stoneforge.orchestrator.checkout_setup import copy_untracked, run_setup, setup_failure
from stoneforge.orchestrator.director import answer_question
from stoneforge.orchestrator.prompts import BUDGET_HANDOFF_REQUEST, HANDOFF_REQUEST, worker_prompt
from stoneforge.orchestrator.recovery import processes_of_session
from stoneforge.orchestrator.refusals import RefusalRecorder
from stoneforge.orchestrator.session_rows import record_token_stats
from stoneforge.store import Fence, Store

log = logging.getLogger("stoneforge.worker")

#: Turns an agent gets to answer a handoff request before the session is ended anyway.
HANDOFF_GRACE_TURNS = 3
#: Sessions per attempt at most: a runaway handoff loop must end somewhere.
MAX_SESSIONS_PER_ATTEMPT = 20


@dataclass
class SlotState:
    """What the live view shows of one running agent."""

    task_id: str
    title: str
    role: str = "worker"
    state: str = "starting"
    session_id: str | None = None
    context_tokens: int = 0
    cost_usd: float = 0.0
    started_at: datetime = field(default_factory=utcnow)


@dataclass
class RunResult:
    """How the attempt ended, for the dispatcher (retry timing, wake-ups)."""

    task_id: str
    status: TaskStatus
    reason: str = ""
    retry: bool = False
    #: Set when the provider ended the attempt (the task waits for it; no attempt spent).
    provider_fault: ProviderFault | None = None


@dataclass
class _HandoffWatch:
    """Per-session handoff bookkeeping, updated from the event stream."""

    threshold: int
    requested: bool = False
    turns_since_request: int = 0
    note: HandoffNote | None = None
    handoff_tool_ids: set[str] = field(default_factory=set)
    stop_now: bool = False
    #: Set when the task's spending reached its budget during this session: why.
    budget: str | None = None
    turns_priced: int = 0


class WorkerRun:
    """Runs one attempt of one task; create one per dispatch."""

    def __init__(
        self,
        *,
        root: Path,
        config: StoneforgeConfig,
        store: Store,
        provider: AgentProvider,
        task: Task,
        target: str,
        agent_env: dict[str, str],
        slot: SlotState,
        on_change: Callable[[], None] = lambda: None,
        on_commit: Callable[[], None] = lambda: None,
        slot_index: int = 0,
        fence: Fence | None = None,
        session_provider: AgentProvider | None = None,
    ) -> None:
        self.root = root
        self.config = config
        self.store = store
        self.provider = provider
        #: Where the task's own sessions run (the Ray backend's nodes); `provider` (this machine)
        #: still answers `ask_director`.
        self.session_provider = session_provider or provider
        self.task = task
        self.target = target
        #: `SF_TASK_SLOT` (0..maxConcurrent-1) lets parallel tasks pick distinct ports.
        self.slot_index = slot_index
        self.slot_env = {"SF_TASK_SLOT": str(slot_index)}
        self.agent_env = {**agent_env, **self.slot_env}
        self.slot = slot
        self.on_change = on_change
        self.on_commit = on_commit
        #: The orchestrator's lease: every state write of this run proves it still holds it.
        self.fence = fence
        #: Which attempt this run is: writes for an attempt that is no longer current are refused.
        self.attempt = task.dispatches
        self._commit_tool_ids: set[str] = set()
        self.live: AgentSession | None = None
        #: While a session's CLI is starting (before it is live): cancelling this ends the start.
        self._starting: anyio.CancelScope | None = None
        self._session_id: str | None = None
        self.stopping = False
        self.stop_reason = ""
        self.summary: str | None = None
        self.last_text = ""

    # -- control -------------------------------------------------------------------------------

    async def stop(self, reason: str = "shutdown") -> None:
        """End the run early: at shutdown (the task is requeued) or because it was cancelled.

        Either way the session ends and its work is committed on the branch, never dropped.
        """
        self.stopping = True
        self.stop_reason = reason
        if self.live is not None:
            await self.live.stop(f"stoneforge: {reason}")
        elif self._starting is not None:
            # Its CLI is still coming up (tens of seconds on a busy machine) and has not been
            # given its prompt: nothing to save, so end it now instead of waiting for it.
            self._kill_session_processes()
            self._starting.cancel()

    def kill(self) -> None:
        """A forced stop: kill the session's CLI (and what it runs) now, saving nothing.

        The session stays `running` in the store: the next start's recovery saves its work
        to a recovery ref and requeues the task with its attempt given back.
        """
        self.stopping = True
        self.stop_reason = self.stop_reason or "forced stop"
        if self.live is not None:
            self.live.kill()
        self._kill_session_processes()

    def _kill_session_processes(self) -> None:
        """Kill the current session's processes, found by its config dir (so also a CLI
        whose pid is not known yet)."""
        if self._session_id is not None:
            for pid in processes_of_session(self.root, self._session_id):
                kill_tree(pid)

    # -- the attempt ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        task = self.task
        worktree_dir = self._worktree_dir()
        branch = task.branch or task_branch(task.id, task.title)
        path = (
            Path(task.worktree)
            if task.worktree
            else worktree_path(worktree_dir, task.id, task.title)
        )
        self.slot.state = "preparing worktree"
        try:
            pool = pool_for(self.root, worktree_dir, self.target)
            wt = await to_thread.run_sync(
                lambda: ensure_task_clone(
                    self.root, path, branch, start_point=self.target, pool=pool
                )
            )
        except Exception as exc:
            return self._fail_attempt(f"could not prepare worktree {path}: {exc}", retry=True)
        self.worktree = wt.path
        self.branch = branch
        if not wt.created:  # commits a previous run left in the clone, before anything reads it
            await self._publish()
        else:
            failed = await self._set_up_checkout()
            if failed is not None:
                self.store.update_task(task.id, branch=branch, worktree=str(wt.path))
                return self._fail_attempt(failed, retry=True)
        base = wt.base or await to_thread.run_sync(self._merge_base)
        self.store.update_task(task.id, branch=branch, worktree=str(wt.path))
        handoff = self._latest_handoff()
        note = task.note
        for _ in range(MAX_SESSIONS_PER_ATTEMPT):
            if self.stopping:  # stopped between sessions, or before the first one started
                return await self._stopped(None)
            over = task_over_budget(self.store, self.task, self.config.budgets)
            if over is not None:  # no session starts on a spent budget
                return self._over_budget(over, handoff)
            outcome, watch, session_id = await self._run_session(handoff, note)
            note = None  # said once
            if self.stopping:
                return await self._stopped(session_id)
            if watch.requested and (
                watch.note is not None or watch.stop_now or self._ended_past_budget(watch, outcome)
            ):
                handoff = await self._hand_off(session_id, watch.note, base)
                if watch.budget is not None:
                    return self._over_budget(watch.budget, handoff)
                continue
            if outcome.status == "completed":
                return await self._completed(session_id, base)
            return await self._crashed(
                session_id, outcome.status, outcome.error or "ended badly", outcome.provider_fault
            )
        return self._fail_attempt(
            f"more than {MAX_SESSIONS_PER_ATTEMPT} sessions in one attempt", retry=False
        )

    # -- one session ---------------------------------------------------------------------------

    async def _set_up_checkout(self) -> str | None:
        """`worktree.copy` and `worktree.setup` in the new checkout; why it failed, or None."""
        setup = self.config.worktree
        if not (setup.copyFiles or setup.setup):
            return None
        self.slot.state = "setting up the checkout"
        self.on_change()
        await to_thread.run_sync(lambda: copy_untracked(self.root, self.worktree, setup.copyFiles))
        runs = await run_setup(setup.setup, self.worktree, setup.setupTimeoutS, self.slot_env)
        failure = setup_failure(runs)
        if failure is None:
            # What the set-up made (a venv, node_modules) is not the agent's work: keep it out of
            # the commits made for the agent, without touching the branch's own .gitignore.
            await to_thread.run_sync(self._exclude_setup_output)
        return failure

    def _exclude_setup_output(self) -> None:
        untracked = run_git(
            ["ls-files", "--others", "--exclude-standard", "--directory"], self.worktree
        ).stdout.split()
        if untracked:
            info = Path(
                run_git(["rev-parse", "--git-path", "info/exclude"], self.worktree).stdout.strip()
            )
            info = info if info.is_absolute() else self.worktree / info
            info.parent.mkdir(parents=True, exist_ok=True)
            with info.open("a", encoding="utf-8") as out:
                out.write("".join(f"/{name}\n" for name in untracked))

    async def _run_session(
        self, handoff: Handoff | None, note: str | None
    ) -> tuple[Any, _HandoffWatch, str]:
        session = self.store.start_session(self.task.id, SessionRole.WORKER)
        self._session_id = session.id
        self.slot.session_id = session.id
        self.slot.state = "running"
        self.slot.context_tokens = 0
        self.on_change()
        watch = _HandoffWatch(threshold=self.config.orchestrator.handoffAtTokens)
        tools = StoneforgeTools(
            on_complete=self._on_complete,
            on_handoff=lambda n: self._on_handoff(watch, n),
            on_ask_director=self._ask_director,
        )
        worker = self.config.agents.worker
        spec = build_spec(
            Role.WORKER,
            cwd=self.worktree,
            prompt=self._prompt(handoff, note),
            config_dir=default_config_dir(self.root, session.id),
            repo_root=self.root,
            target_branch=self.target,
            model=worker.model,
            mcp=tools,
            env=self.agent_env,
            max_turns=worker.maxTurns,
            idle_timeout_s=worker.idleTimeoutS,
            claude_setup=claude_setup.for_role(
                self.root,
                inherit=self.config.agents.claudeSetup == "inherit",
                mcp_servers=worker.mcpServers == "inherit",
            ),
        )

        async def on_start(live: AgentSession) -> None:
            self.live = live
            self._starting = None  # from now on a stop goes through the live session
            if live.pid:  # recorded at spawn, so recovery finds the CLI even if we die now
                self.store.update_session(session.id, pid=live.pid)
            if self.stopping:
                await live.stop("the orchestrator is stopping")

        refusals = RefusalRecorder(self.store, self.task.id, session.id, self.worktree, spec.env)

        async def on_event(event: AgentEvent) -> None:
            refusals.observe(event)  # an escape attempt is noted on the task, never fatal
            await self._watch_event(session.id, watch, event)

        async def on_update(stats: TokenStats) -> None:
            self.slot.context_tokens = stats.context_tokens
            self.slot.cost_usd = stats.cost_usd or self.slot.cost_usd
            record_token_stats(self.store, session.id, stats)
            self.on_change()
            if stats.turns > watch.turns_priced:  # a new turn (not the final result)
                watch.turns_priced = stats.turns
                await self._check_budget(session.id, watch)

        outcome: SessionOutcome | None = None
        with anyio.CancelScope() as self._starting:
            outcome = await run_session(
                self.session_provider,
                spec,
                on_update=on_update,
                on_event=on_event,
                on_start=on_start,
            )
        self._starting = None
        self.live = None
        if outcome is None:  # stopped while its CLI was starting
            self._kill_session_processes()  # in case it was spawned as the start was cancelled
            outcome = SessionOutcome(status="stopped")
        if outcome.last_text:
            self.last_text = outcome.last_text
        self.store.update_session(
            session.id,
            pid=outcome.pid,
            provider_session_id=outcome.provider_session_id,
        )
        return outcome, watch, session.id

    async def _watch_event(self, session_id: str, watch: _HandoffWatch, event: AgentEvent) -> None:
        if isinstance(event, SessionStarted):
            self.store.update_session(
                session_id, pid=event.pid, provider_session_id=event.provider_session_id
            )
            return
        if isinstance(event, AssistantTurn):
            for use in event.tool_uses:
                if use.name.endswith("__handoff"):
                    watch.handoff_tool_ids.add(use.id)
                elif use.name == "Bash" and "commit" in str(use.input.get("command", "")):
                    self._commit_tool_ids.add(use.id)
            if watch.requested:
                watch.turns_since_request += 1
                if watch.turns_since_request > HANDOFF_GRACE_TURNS and watch.note is None:
                    watch.stop_now = True  # it will not hand off: end it and write one ourselves
            elif event.context_tokens >= watch.threshold:
                watch.requested = True
                self.slot.state = "handing off"
                self.on_change()
                self.store.record_event(
                    "session.handoff_requested",
                    "session",
                    session_id,
                    {"taskId": self.task.id, "contextTokens": event.context_tokens},
                )
                if self.live is not None:
                    await self.live.send(HANDOFF_REQUEST)
        elif isinstance(event, ToolResult) and event.tool_use_id in watch.handoff_tool_ids:
            watch.stop_now = True  # the handoff is recorded: nothing more to do in this session
        elif isinstance(event, ToolResult) and event.tool_use_id in self._commit_tool_ids:
            await self._publish()
            self.on_commit()
        if watch.stop_now and self.live is not None:
            await self.live.stop("handoff")

    async def _check_budget(self, session_id: str, watch: _HandoffWatch) -> None:
        """After each turn: once the task's spending (this session's included) reaches its
        budget, ask for a handoff, as at the context threshold; the run ends after it."""
        if watch.budget is not None:
            return
        over = task_over_budget(self.store, self.task, self.config.budgets)
        if over is None:
            return
        watch.budget = over
        spent = self.store.cost_totals(task_id=self.task.id)
        self.store.record_event(
            "session.budget_reached",
            "session",
            session_id,
            {
                "taskId": self.task.id,
                "why": over,
                "costUsd": spent.cost_usd,
                "tokens": spent.tokens,
            },
        )
        if watch.requested:  # a context handoff is under way already: it serves for both
            return
        watch.requested = True
        self.slot.state = "handing off (budget)"
        self.on_change()
        if self.live is not None:
            await self.live.send(BUDGET_HANDOFF_REQUEST)

    def _ended_past_budget(self, watch: _HandoffWatch, outcome: SessionOutcome) -> bool:
        """The budget was reached and the session ended on its own without handing off or
        reporting the task complete (it ended its turn before it read the request): it still
        stops at its budget, with a handoff written from the facts, and is never landed."""
        return watch.budget is not None and outcome.status == "completed" and self.summary is None

    def _over_budget(self, why: str, handoff: Handoff | None) -> RunResult:
        """The task's budget is spent: it waits in budget_exceeded for a person, its work
        committed on its branch and its latest handoff kept for the session that continues."""
        kept = f"; handoff {handoff.id} is kept for the next session" if handoff else ""
        note = (
            f"Budget reached: {why}. The work so far is committed on {self.branch}{kept}. "
            f"`sf task retry {self.task.id} --budget USD` gives it a bigger budget and "
            "continues it; `sf task cancel` ends it."
        )
        try:
            self.store.transition_task(
                self.task.id,
                TaskEvent.EXCEED_BUDGET,
                attempt=self.attempt,
                fence=self.fence,
                note=note,
            )
        except InvalidTransitionError as exc:  # cancelled meanwhile, or the lease is gone
            log.info("task %s not stopped at its budget: %s", self.task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(self.task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "budget reached"
        return RunResult(self.task.id, TaskStatus.BUDGET_EXCEEDED, why)

    async def _on_complete(self, summary: str) -> None:
        self.summary = summary
        self.store.record_event(
            "task.complete_reported", "task", self.task.id, {"summary": summary[:500]}
        )

    async def _on_handoff(self, watch: _HandoffWatch, note: HandoffNote) -> None:
        watch.note = note
        watch.requested = True

    async def _ask_director(self, question: str) -> str:
        """`ask_director`: the plan's director answers (the answer is the tool's result)."""
        self.slot.state = "asking the director"
        self.on_change()
        try:
            return await answer_question(
                root=self.root,
                config=self.config,
                store=self.store,
                task=self.task,
                question=question,
                target=self.target,
                provider=self.provider,
                agent_env=self.agent_env,
            )
        finally:
            self.slot.state = "running"
            self.on_change()

    def _prompt(self, handoff: Handoff | None, note: str | None) -> str:
        plan = None
        plan_titles: list[str] = []
        if self.task.plan_id:
            plan = self.store.get_plan(self.task.plan_id)
            plan_titles = [
                f"{t.id} {t.title} ({t.status.value})"
                for t in self.store.list_tasks(plan_id=plan.id)
                if t.id != self.task.id
            ][:30]
        warnings = self._forecast_warnings()
        return worker_prompt(
            self.task,
            branch=self.branch,
            target=self.target,
            plan=plan,
            plan_titles=plan_titles,
            handoff=handoff,
            note=note,
            warnings=warnings,
        )

    def _forecast_warnings(self) -> list[str]:
        """Predicted conflicts involving this task, from the latest recorded forecast."""
        event = self.store.last_event("forecast.updated")
        if event is None:
            return []
        found = []
        for pair in event.data.get("conflicts", []):
            if self.task.id in (pair.get("ours"), pair.get("theirs")):
                other = pair["theirs"] if pair.get("ours") == self.task.id else pair["ours"]
                files = ", ".join(pair.get("paths", []))
                found.append(f"your branch and {other} both change {files}")
        return found

    # -- endings -------------------------------------------------------------------------------

    def _worktree_dir(self) -> Path:
        configured = Path(self.config.orchestrator.worktreeDir)
        return configured if configured.is_absolute() else self.root / configured

    def _merge_base(self) -> str:
        head = run_git(["rev-parse", "HEAD"], self.worktree).stdout.strip()
        proc = run_git(["merge-base", self.target, head], self.root, check=False)
        return proc.stdout.strip() or head

    def _latest_handoff(self) -> Handoff | None:
        handoffs = self.store.list_handoffs(self.task.id)
        return handoffs[-1] if handoffs else None

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

    async def _hand_off(self, session_id: str, note: HandoffNote | None, base: str) -> Handoff:
        await self._commit_leftovers(
            f"stoneforge: work of session {session_id} at its context handoff"
        )
        head = await to_thread.run_sync(
            lambda: run_git(["rev-parse", "HEAD"], self.worktree).stdout.strip()
        )
        if note is not None:
            handoff = Handoff(
                task_id=self.task.id,
                session_id=session_id,
                done=note.done,
                remaining=note.remaining,
                files_touched=note.files_touched,
                decisions=note.decisions,
                failing_tests=note.failing_tests,
                next_step=note.next_step,
                commit=head,
                source="agent",
                created_at=utcnow(),
            )
        else:
            handoff = await to_thread.run_sync(lambda: self._facts_handoff(session_id, base, head))
        stored = self.store.add_handoff(handoff)
        self.store.update_session(session_id, status=SessionStatus.HANDED_OFF, ended_at=utcnow())
        self.slot.state = "handed off"
        self.on_change()
        return stored

    def _facts_handoff(self, session_id: str, base: str, head: str) -> Handoff:
        """A handoff written from facts when the agent gave none."""
        commits = run_git(["log", "--format=%h %s", f"{base}..{head}"], self.worktree).stdout
        files = run_git(["diff", "--name-only", base, head], self.worktree).stdout.split()
        stat = run_git(["diff", "--stat", base, head], self.worktree).stdout.strip()
        last = self.last_text.strip()[-1500:]
        return Handoff(
            task_id=self.task.id,
            session_id=session_id,
            done=("Commits so far:\n" + commits.strip()) if commits.strip() else "No commits yet.",
            remaining="Not stated: the session gave no handoff. Read the diff and continue.",
            files_touched=files,
            decisions=[],
            failing_tests=[],
            next_step=(f"The last message was: {last}" if last else "Review the diff so far.")
            + (f"\n\nDiffstat:\n{stat}" if stat else ""),
            commit=head,
            source="orchestrator",
            created_at=utcnow(),
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
        count, head = await to_thread.run_sync(self._branch_progress)
        if count == 0:
            reason = (
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

    def _end_session(self, session_id: str, status: SessionStatus, error: str | None) -> None:
        self.store.update_session(session_id, status=status, ended_at=utcnow(), error=error)

    def _restore_task_branch(self) -> str | None:
        """Put the worktree back on the task branch if the agent left it; say why it is a failure."""
        current = checked_out_branch(self.worktree)
        if current == self.branch:
            return None
        saved = save_head(self.worktree, self.task.id)
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
        # A shutdown is not the task's fault: the attempt does not count.
        try:
            self.store.transition_task(
                self.task.id,
                TaskEvent.REQUEUE,
                attempt=self.attempt,
                fence=self.fence,
                give_back_attempt=True,
                note="The previous session was stopped when the orchestrator shut down"
                + saved
                + ". Continue from the branch as it is.",
            )
        except InvalidTransitionError as exc:  # cancelled meanwhile, or the lease is gone
            log.info("task %s not requeued: %s", self.task.id, exc)
        return RunResult(self.task.id, TaskStatus.OPEN, "stopped")

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

    def _fail_attempt(self, reason: str, *, retry: bool) -> RunResult:
        """Record a failed attempt: back to the queue, or `failed` after maxAttempts.

        Only this attempt's own task is touched: after a cancel (or a retry that started a newer
        attempt) the write is refused and the run simply ends.
        """
        task = self.store.get_task(self.task.id)
        history = [line for line in (task.note or "").splitlines() if line.startswith("attempt ")]
        history.append(f"attempt {task.attempts}: {reason}")
        exhausted = task.attempts >= self.config.orchestrator.maxAttempts or not retry
        event = TaskEvent.FAIL if exhausted else TaskEvent.REQUEUE
        try:
            self.store.transition_task(
                task.id, event, attempt=self.attempt, fence=self.fence, note="\n".join(history)
            )
        except InvalidTransitionError as exc:
            log.info("task %s: attempt not recorded: %s", task.id, exc)
            self.slot.state = "cancelled"
            return RunResult(task.id, TaskStatus.CANCELLED, str(exc))
        self.slot.state = "failed" if exhausted else "requeued"
        if exhausted:
            return RunResult(task.id, TaskStatus.FAILED, reason)
        return RunResult(task.id, TaskStatus.OPEN, reason, retry=True)
