"""Pydantic models at the boundaries: what the store returns and the CLI / LSP print.

Field names are snake_case in Python and camelCase on the wire (``model_dump(by_alias=True)``),
matching the JSON shapes documented in DESIGN.md and docs/protocol.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def utcnow() -> datetime:
    """The current time, UTC, to the millisecond (what the store keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class WireModel(BaseModel):
    """Base for every model that crosses a boundary: camelCase aliases, ISO 8601 UTC times."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict of this model."""
        return self.model_dump(mode="json", by_alias=True)


class PlanStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"


class TaskStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    REVIEW = "review"
    MERGED = "merged"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Its spending reached its budget: its work is committed, its handoff kept; a person
    #: retries it with a bigger budget (`sf task retry --budget`) or cancels it.
    BUDGET_EXCEEDED = "budget_exceeded"


#: Statuses in which a task no longer waits for anything.
FINISHED_TASK_STATUSES = frozenset({TaskStatus.MERGED, TaskStatus.CANCELLED})


class SessionRole(StrEnum):
    WORKER = "worker"
    STEWARD = "steward"
    DIRECTOR = "director"


class SessionStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    HANDED_OFF = "handed_off"
    CRASHED = "crashed"
    FAILED = "failed"


class MergeStatus(StrEnum):
    #: Waiting for (or under) the steward's review (`agents.steward.review`); checks come after.
    REVIEWING = "reviewing"
    PENDING = "pending"
    TESTING = "testing"
    AWAITING_APPROVAL = "awaiting_approval"
    MERGED = "merged"
    CONFLICT = "conflict"
    TEST_FAILED = "test_failed"
    REJECTED = "rejected"


# -- costs and budgets (issue 15) -----------------------------------------------------------------


class CostTotals(WireModel):
    """What a set of agent sessions spent: the sum of their recorded tokens and cost.

    ``tokens`` is what the token budgets count: every prompt token (cached or not) plus every
    output token.
    """

    sessions: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


class CostRow(CostTotals):
    """One group of a cost roll-up: ``key`` is the task id, plan id, role or UTC day
    (None: sessions of no task / no plan)."""

    key: str | None = None
    title: str | None = None


class CostReport(WireModel):
    """`sf cost`: every session's spending, rolled up four ways (each way sums to ``total``)."""

    total: CostTotals
    by_task: list[CostRow] = Field(default_factory=list)
    by_plan: list[CostRow] = Field(default_factory=list)
    by_role: list[CostRow] = Field(default_factory=list)
    by_day: list[CostRow] = Field(default_factory=list)


class BudgetHold(WireModel):
    """A plan or day budget that stops new dispatch, and why (shown by `sf status`)."""

    #: "day" (every task) or "plan" (the tasks of ``plan_id``).
    scope: str
    plan_id: str | None = None
    #: One line: "day budget reached: $5.02 of $5.00 spent today (UTC)".
    reason: str


# -- plans, sessions, tasks --------------------------------------------------------------------


class Plan(WireModel):
    id: str
    title: str
    goal: str | None = None
    status: PlanStatus = PlanStatus.DRAFT
    created_at: datetime
    task_ids: list[str] = Field(default_factory=list)
    #: What the plan's sessions (its tasks' and its director's) spent.
    cost: CostTotals = Field(default_factory=CostTotals)


class AgentSession(WireModel):
    id: str
    task_id: str | None = None
    role: SessionRole
    status: SessionStatus = SessionStatus.RUNNING
    pid: int | None = None
    provider_session_id: str | None = None
    context_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    started_at: datetime
    ended_at: datetime | None = None
    error: str | None = None


class Handoff(WireModel):
    id: str | None = None
    task_id: str | None = None
    session_id: str | None = None
    done: str = ""
    remaining: str = ""
    files_touched: list[str] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    failing_tests: list[str] = Field(default_factory=list)
    next_step: str = ""
    commit: str | None = None
    #: "agent" when the agent called the handoff tool, "orchestrator" when written from facts.
    source: str = "agent"
    created_at: datetime


class CheckRun(WireModel):
    command: str
    exit_code: int | None
    duration_s: float
    output_tail: str = ""
    flaky: bool = False
    #: Its command is in `merge.quarantine`: a failure is shown but does not block landing.
    quarantined: bool = False


class ReviewVerdict(StrEnum):
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"


class ReviewComment(WireModel):
    """One review comment, anchored to a file of the change and a line of its new version."""

    path: str
    line: int | None = None
    body: str


class Review(WireModel):
    """The steward's review of one merge request's change (one round of the task's reviews)."""

    id: str
    mr_id: str
    task_id: str
    #: 1 for the task's first review, counting every review of the task's merge requests.
    round: int
    verdict: ReviewVerdict
    summary: str = ""
    comments: list[ReviewComment] = Field(default_factory=list)
    #: The steward session that reviewed it (None: given by a person or a test).
    session_id: str | None = None
    #: The branch tip that was reviewed.
    head_commit: str | None = None
    created_at: datetime


class MergeRequest(WireModel):
    id: str
    task_id: str
    status: MergeStatus = MergeStatus.PENDING
    branch: str
    candidate_commit: str | None = None
    merged_commit: str | None = None
    checks: list[CheckRun] = Field(default_factory=list)
    summary: str = ""
    reason: str | None = None
    #: Set when a human approved it (autoMerge false): it lands as soon as its checks pass.
    approved_at: datetime | None = None
    created_at: datetime
    merged_at: datetime | None = None
    #: The task attempt (its ``dispatches`` then) that made this MR: only that attempt lands.
    attempt: int | None = None
    #: The task branch's tip when the MR was made: the task's own recorded commits.
    head_commit: str | None = None
    #: The steward's reviews of this MR, oldest first.
    reviews: list[Review] = Field(default_factory=list)
    #: Stacked branches: the unlanded blockers whose work its branch was built on ("stacked on
    #: t3"), and the commit its own changes start from (its diff's base; None: the merge base
    #: with the target).
    stacked_on: list[str] = Field(default_factory=list)
    base_commit: str | None = None


class TaskQuestion(WireModel):
    """A worker's `ask_director` question and the director's answer (the tool's result)."""

    question: str
    answer: str
    #: The director session that answered (None when no director could be run).
    session_id: str | None = None
    #: Why the director could not answer, when the answer is the fallback text.
    error: str | None = None
    asked_at: datetime | None = None
    answered_at: datetime


class ToolRefusal(WireModel):
    """A tool call of the task's agent that was refused: by our guard, the CLI's permission
    rules, or the sandbox (a write outside its checkout). Recorded, never fatal."""

    tool: str
    #: The command or file the agent tried, redacted and shortened.
    tried: str
    reason: str
    #: The paths outside the checkout it touched, when the sandbox refused it.
    paths: list[str] = Field(default_factory=list)
    session_id: str | None = None
    at: datetime


class Task(WireModel):
    id: str
    title: str
    description: str = ""
    plan_id: str | None = None
    priority: int = Field(default=3, ge=1, le=5)
    effective_priority: int = 3
    depends_on: list[str] = Field(default_factory=list)
    status: TaskStatus = TaskStatus.OPEN
    blocked: bool = False
    branch: str | None = None
    worktree: str | None = None
    attempts: int = 0
    #: How often the task was dispatched, ever (never reset): names the current attempt.
    dispatches: int = 0
    created_at: datetime
    updated_at: datetime | None = None
    #: Why the last attempt ended badly, or the note the next worker should read.
    note: str | None = None
    sessions: list[AgentSession] = Field(default_factory=list)
    handoffs: list[Handoff] = Field(default_factory=list)
    merge_request: MergeRequest | None = None
    #: Questions the task's workers asked the director, with the answers, oldest first.
    questions: list[TaskQuestion] = Field(default_factory=list)
    #: What the task's sessions (every role) spent so far.
    cost: CostTotals = Field(default_factory=CostTotals)
    #: The task's own budget (`sf task retry --budget`), instead of `budgets.perTaskUsd` /
    #: `budgets.perTaskTokens`; None: the configured one.
    budget_usd: float | None = None
    budget_tokens: int | None = None
    #: Tool calls its agents were refused (escape attempts among them), oldest first.
    refusals: list[ToolRefusal] = Field(default_factory=list)
    #: Stacked branches (`orchestrator.stacking`): the blockers in review whose work its branch
    #: is built on, each with the blocker head it was built on; empty when based on the target.
    stack_heads: dict[str, str] = Field(default_factory=dict)
    #: The commit its own work starts from while stacked (the blocker head, or a merge of them).
    stack_base: str | None = None
    #: The blockers its branch is stacked on (the keys of `stack_heads`): "stacked on t3".
    stacked_on: list[str] = Field(default_factory=list)


class Event(WireModel):
    """One row of the append-only event log: who changed what, when."""

    id: int
    at: datetime
    actor: str
    kind: str
    entity: str
    entity_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class LandingPause(WireModel):
    """Landing waits for a person: the target's checkout cannot follow (see `steward.paused`)."""

    checkout: str
    #: One line naming the checkout and the files: "<path> has uncommitted changes in a.py".
    reason: str
    files: list[str] = Field(default_factory=list)
    since: datetime

    @property
    def line(self) -> str:
        return f"landing paused: {self.reason}"


class ProviderOutage(WireModel):
    """No new agent session starts: the provider failed (its circuit is open) or every credential
    rests after a rate limit (see `provider.unavailable`). Tasks wait in the queue meanwhile."""

    reason: str
    #: When the next probe (or the first credential back) is due; None while a probe runs.
    next_try_at: datetime | None = None
    since: datetime
    #: "provider unavailable, next try 00:41:10 (529 overloaded)"
    line: str


class FlakyCheck(WireModel):
    """A check command that failed and then passed its retry at least `merge.flakyReportAfter`
    times (each such pass is a `check.flaky` event)."""

    command: str
    count: int
    last_merge_request: str | None = None
    last_commit: str | None = None


class ClusterNode(WireModel):
    """A node of the Ray backend's cluster, as `sf status` shows it."""

    node_id: str
    address: str
    agent_slots: int
    check_slots: int
    busy: int = 0  # agent slots our sessions use there
    #: The sessions running there (their ids), so the editor can group its agents by node.
    sessions: list[str] = Field(default_factory=list)


class OpenQuestion(WireModel):
    """A worker's question the director could not answer, on a task still under way: the
    worker went on with an assumption of its own, which a person may want to check."""

    task_id: str
    task_title: str
    question: str
    error: str
    asked_at: datetime | None = None


class CheckingCandidate(WireModel):
    """A candidate the merge queue is checking now, and the base it is built on (look-ahead,
    `merge.parallelChecks`: another candidate checked before it, assumed to land)."""

    candidate: str
    #: The merge requests it checks (a batch lands them together).
    merge_requests: list[str]
    #: Its first parent: the commit it lands on if its checks pass.
    base: str | None = None
    #: Whether that base is the target's tip now (False: a speculative candidate).
    on_target: bool = False
    #: The merge requests of the candidate it is built on, when that is another one checked now.
    on_merge_requests: list[str] = Field(default_factory=list)

    def line(self, target: str) -> str:
        """`mr-3, mr-4 on mr-1, mr-2` or `mr-1, mr-2 on main`."""
        if self.on_target:
            on = target
        elif self.on_merge_requests:
            on = ", ".join(self.on_merge_requests)
        else:
            on = (self.base or "?")[:10]
        return f"{', '.join(self.merge_requests)} on {on} (candidate {self.candidate[:10]})"


class StatusSummary(WireModel):
    repository: str
    tasks_by_status: dict[str, int]
    blocked: int
    ready: int
    running_sessions: int
    merge_requests_by_status: dict[str, int]
    orchestrator: dict[str, Any] | None = None
    #: Set while an orchestrator runs and its steward waits for the target's checkout.
    landing_paused: LandingPause | None = None
    #: Set while an orchestrator runs and starts no session because the provider is unavailable.
    provider_unavailable: ProviderOutage | None = None
    #: Spending of the sessions started today (UTC) and of all sessions.
    cost_today: CostTotals = Field(default_factory=CostTotals)
    cost_total: CostTotals = Field(default_factory=CostTotals)
    #: Plan and day budgets that stop new dispatch now.
    budget_holds: list[BudgetHold] = Field(default_factory=list)
    #: The Ray backend's nodes while an orchestrator runs with it (None: local backend).
    nodes: list[ClusterNode] | None = None
    #: Unfinished tasks whose branch is stacked on blockers in review: task -> those blockers.
    stacked: dict[str, list[str]] = Field(default_factory=dict)
    #: The candidates the merge queue checks now (several at once with look-ahead).
    checking: list[CheckingCandidate] = Field(default_factory=list)
    #: Questions to the director that it could not answer, on tasks not merged or cancelled.
    open_questions: list[OpenQuestion] = Field(default_factory=list)
