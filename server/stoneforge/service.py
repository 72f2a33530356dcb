"""The one facade that the CLI and the language server both call.

A :class:`Service` is bound to one repository: it finds the repository root, loads and validates
the config (refusing to go on when it is broken) and opens the store. Everything the user can do
is a method here, so both front ends behave the same.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from stoneforge import diffs
from stoneforge.agents.sandbox import SandboxStatus
from stoneforge.agents.sandbox import report as sandbox_report
from stoneforge.config import CONFIG_RELPATH, DEFAULT_CONFIG_YAML, StoneforgeConfig, load_config
from stoneforge.errors import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    NotInitializedError,
)
from stoneforge.git.errors import GitLayerError
from stoneforge.git.forecast import Forecast, forecast
from stoneforge.git.remote import adopt_branch
from stoneforge.git.repo import resolve_target_branch
from stoneforge.git.target import TargetBranch
from stoneforge.lifecycle import TaskEvent, next_task_status
from stoneforge.models import (
    CheckingCandidate,
    ClusterNode,
    CostReport,
    FlakyCheck,
    Handoff,
    MergeRequest,
    MergeStatus,
    Plan,
    StatusSummary,
    Task,
    TaskStatus,
)
from stoneforge.orchestrator import merge_decisions
from stoneforge.orchestrator.budgets import dispatch_holds, task_limit, utc_today
from stoneforge.orchestrator.daemon import LEASE_NAME, LEASE_TTL_S, Orchestrator
from stoneforge.orchestrator.director import plan_from_goal
from stoneforge.orchestrator.pause import latest_pause
from stoneforge.orchestrator.provider_status import latest_outage
from stoneforge.orchestrator.recovery import owner_alive
from stoneforge.orchestrator.steward.checking import checking_now
from stoneforge.store import Store
from stoneforge.workspace import (
    STATE_DB,
    STATE_DIR,
    STATE_GITIGNORE,
    exclude_worktree_dir,
    find_repo_root,
    write_atomically,
)

#: The event the Ray backend records when the cluster's nodes or their use change.
CLUSTER_NODES = "cluster.nodes"


class Service:
    """Stoneforge for one repository."""

    def __init__(self, root: Path, config: StoneforgeConfig, store: Store) -> None:
        self.root = root
        self.config = config
        self.store = store

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, start: Path | None = None, actor: str | None = None) -> Service:
        """Open the initialised repository around ``start`` (default: the current directory)."""
        root = find_repo_root((start or Path.cwd()).resolve())
        config = load_config(root)  # raises on a bad config before anything is touched
        db_path = root / STATE_DIR / STATE_DB
        if not db_path.exists():
            raise NotInitializedError(
                f"{root} has no stoneforge state yet ({db_path} is missing); run `sf init` first"
            )
        return cls(root, config, Store(db_path, actor=actor))

    @classmethod
    def init(cls, start: Path | None = None, actor: str | None = None) -> tuple[Service, list[str]]:
        """Set up `.stoneforge/` in the repository; returns the service and what was created."""
        root = find_repo_root((start or Path.cwd()).resolve())
        config_path = root / CONFIG_RELPATH
        created: list[str] = []
        config = load_config(root)  # an existing broken config stops init before any write
        state_dir = root / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        if not config_path.exists():
            write_atomically(config_path, DEFAULT_CONFIG_YAML)
            created.append(str(CONFIG_RELPATH))
        ignore_path = state_dir / ".gitignore"
        if not ignore_path.exists():
            write_atomically(ignore_path, STATE_GITIGNORE)
            created.append(f"{STATE_DIR}/.gitignore")
        if exclude_worktree_dir(root, config):
            created.append(".git/info/exclude entry for " + config.orchestrator.worktreeDir)
        db_path = state_dir / STATE_DB
        if not db_path.exists():
            created.append(f"{STATE_DIR}/{STATE_DB}")
        store = Store(db_path, actor=actor)
        return cls(root, config, store), created

    @classmethod
    def attach(cls, start: Path | None = None, actor: str | None = None) -> Service:
        """Open the repository for an editor without setting up what nobody asked for.

        A repository with `.stoneforge/config.yaml` (say a clone whose config is committed) gets
        its ignored state made as needed; one without raises :class:`NotInitializedError`, and
        the editor offers `sf init` instead of writing files into the user's repository.
        """
        root = find_repo_root((start or Path.cwd()).resolve())
        if (root / CONFIG_RELPATH).exists():
            return cls.init(root, actor=actor)[0]
        if not (root / STATE_DIR / STATE_DB).exists():
            raise NotInitializedError(
                f"{root} does not use Stoneforge yet (no {CONFIG_RELPATH}); run `sf init` there "
                "(the editor's Initialize Stoneforge here) to set it up"
            )
        return cls.open(root, actor=actor)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plans ---------------------------------------------------------------------------------

    def create_plan(
        self,
        title: str,
        goal: str | None = None,
        *,
        activate: bool = False,
        director: bool = True,
    ) -> Plan:
        """A draft plan (active with ``activate``). With a goal, a director session reads the
        code and fills it with tasks and dependencies; without one (or with ``director``
        false: the caller adds the tasks itself) the goal is only stored and the plan starts
        empty."""
        if goal is None or not goal.strip() or not director:
            plan = self.store.create_plan(title, goal)
        else:
            plan = self.plan_with_director(title, goal)
        return self.store.activate_plan(plan.id) if activate else plan

    def plan_with_director(self, title: str, goal: str) -> Plan:
        """Run the director on ``goal`` (blocking; call it from a thread without an event
        loop): the plan and its tasks exist only if it proposed a valid plan."""
        if not title.strip():
            raise InvalidInputError("plan title must not be empty")
        target = self.target_branch()
        return anyio.run(
            functools.partial(
                plan_from_goal,
                root=self.root,
                config=self.config,
                store=self.store,
                title=title,
                goal=goal,
                target=target,
            )
        )

    def list_plans(self) -> list[Plan]:
        return self.store.list_plans()

    def get_plan(self, plan_id: str) -> Plan:
        return self.store.get_plan(self.resolve_plan_id(plan_id))

    def activate_plan(self, plan_id: str) -> Plan:
        return self.store.activate_plan(self.resolve_plan_id(plan_id))

    # -- tasks ---------------------------------------------------------------------------------

    def create_task(
        self,
        title: str,
        *,
        description: str = "",
        plan_id: str | None = None,
        priority: int = 3,
        depends_on: Sequence[str] = (),
        branch: str | None = None,
    ) -> Task:
        """A new task; with ``branch``, it continues that existing (local or remote) branch
        instead of starting a new one from the target's tip."""
        if branch is not None:
            try:
                branch = adopt_branch(self.root, branch, target=self.target_branch())
            except GitLayerError as exc:
                raise InvalidInputError(f"--branch: {exc}") from exc
        return self.store.create_task(
            title,
            description=description,
            plan_id=self.resolve_plan_id(plan_id) if plan_id is not None else None,
            priority=priority,
            depends_on=depends_on,
            branch=branch,
        )

    def resolve_plan_id(self, ref: str) -> str:
        """A plan named by its id or by its exact title; an ambiguous title lists the choices."""
        plans = self.store.list_plans()
        if any(p.id == ref for p in plans):
            return ref
        matches = [p for p in plans if p.title == ref.strip()]
        if len(matches) == 1:
            return matches[0].id
        if matches:
            listing = ", ".join(f"{p.id} ({p.status.value})" for p in matches)
            raise InvalidInputError(f"plan title {ref!r} is ambiguous: {listing}; use the id")
        raise NotFoundError(f"no plan with id or title {ref!r}")

    def list_tasks(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> list[Task]:
        if plan_id is not None:  # an unknown plan is an error, not an empty list
            plan_id = self.resolve_plan_id(plan_id)
        return self.store.list_tasks(plan_id=plan_id, status=status)

    def task_list_json(
        self, *, plan_id: str | None = None, status: TaskStatus | None = None
    ) -> str:
        """`list_tasks` as the CLI's JSON text (``json.dumps(..., indent=2)`` of the wires),
        written mostly by SQLite: 10,000 tasks are timed."""
        if plan_id is not None:
            plan_id = self.resolve_plan_id(plan_id)
        return self.store.task_list_json(plan_id=plan_id, status=status)

    def get_task(self, task_id: str) -> Task:
        return self.store.get_task(task_id)

    def cancel_task(self, task_id: str) -> Task:
        return self.store.cancel_task(task_id)

    def retry_task(
        self,
        task_id: str,
        *,
        budget_usd: float | None = None,
        budget_tokens: int | None = None,
    ) -> Task:
        """Put a failed, cancelled or budget_exceeded task back in the queue.

        ``budget_usd`` / ``budget_tokens`` set the task's own budget *to* that total (what it
        spent so far counts), replacing `budgets.perTaskUsd` / `perTaskTokens` for it. A retry
        that would stop again at once (spending already at the budget) is refused.
        """
        task = self.store.get_task(task_id)
        next_task_status(task.id, task.status, TaskEvent.RETRY)  # a wrong state says so first
        if budget_usd is not None and budget_usd <= 0:
            raise InvalidInputError(f"--budget must be above 0 USD, got {budget_usd}")
        if budget_tokens is not None and budget_tokens <= 0:
            raise InvalidInputError(f"--budget-tokens must be above 0, got {budget_tokens}")
        fields: dict[str, Any] = {}
        if budget_usd is not None:
            fields["budget_usd"] = budget_usd
        if budget_tokens is not None:
            fields["budget_tokens"] = budget_tokens
        limit = task_limit(task.model_copy(update=fields), self.config.budgets)
        reached = limit.reached(task.cost)
        if reached is not None:
            raise InvalidInputError(
                f"task {task.id} has spent {reached}: it would stop again at once; give it a "
                "bigger budget with `sf task retry "
                f"{task.id} --budget USD` (a total, above ${task.cost.cost_usd:.2f}) or "
                f"`--budget-tokens N` (above {task.cost.tokens:,})"
            )
        if task.status == TaskStatus.BUDGET_EXCEEDED:
            budget = [f"${v:.2f}" for v in [limit.usd] if v is not None]
            budget += [f"{v:,} tokens" for v in [limit.tokens] if v is not None]
            fields["note"] = (
                f"A person raised this task's budget (now {' and '.join(budget)}, "
                f"${task.cost.cost_usd:.2f} spent so far). Continue from the handoff."
            )
        return self.store.transition_task(task_id, TaskEvent.RETRY, **fields)

    def add_dependency(self, blocked: str, blocker: str) -> Task:
        return self.store.add_dependency(blocked, blocker)

    def ready_task_ids(self) -> list[str]:
        return self.store.ready_task_ids()

    def task_tree(self) -> dict[str, Any]:
        """The lean board for the editor's Tasks view: plans -> lean task rows, the tasks of no
        plan, and the board's version (the newest event the read saw), in one snapshot.

        A lean row is what a tree row shows (see :mod:`stoneforge.store.board`); a task's
        sessions, handoffs and the rest come from :meth:`task_details`."""
        version, plans, tasks = self.store.lean_board()
        by_plan: dict[str | None, list[dict[str, Any]]] = {}
        for task in tasks:
            by_plan.setdefault(task.get("planId"), []).append(task)
        return {
            "version": version,
            "plans": [{**plan, "tasks": by_plan.get(plan["id"], [])} for plan in plans],
            "unplanned": by_plan.get(None, []),
            "handoffAtTokens": self.config.orchestrator.handoffAtTokens,
        }

    def full_task_tree(self) -> dict[str, Any]:
        """Plans -> full tasks (with sessions, handoffs, ...): what `taskTree` answered before
        it was lean; kept for `taskTree {"full": true}` and the benchmark's comparison."""
        plans = self.store.list_plans()
        by_plan: dict[str | None, list[dict[str, Any]]] = {}
        for task in self.store.list_tasks():
            by_plan.setdefault(task.plan_id, []).append(task.wire())
        return {
            "version": None,
            "plans": [{**plan.wire(), "tasks": by_plan.get(plan.id, [])} for plan in plans],
            "unplanned": by_plan.get(None, []),
            "handoffAtTokens": self.config.orchestrator.handoffAtTokens,
        }

    def task_details(self, task_id: str) -> dict[str, Any]:
        """One task in full (sessions, handoffs, merge request with checks and reviews,
        questions, refusals, cost) with its lean row, for a node expanded or a document opened."""
        task = self.store.get_task(task_id)
        version, rows = self.store.lean_tasks([task_id])
        return {**task.wire(), "version": version, "row": rows[0] if rows else None}

    def list_handoffs(self, task_id: str | None = None) -> list[Handoff]:
        return self.store.list_handoffs(task_id)

    def running_agents(self) -> list[dict[str, Any]]:
        """The sessions running now, with what they work on (the editor's Agents view)."""
        return self._sessions_marked_running(live=True)

    def interrupted_sessions(self) -> list[dict[str, Any]]:
        """Sessions still marked running whose process is gone (an orchestrator that was
        killed): nothing runs them; the next start saves their work and requeues their tasks."""
        return self._sessions_marked_running(live=False)

    def _sessions_marked_running(self, *, live: bool) -> list[dict[str, Any]]:
        sessions = [s for s, owner in self.store.orphaned_sessions() if owner_alive(owner) == live]
        titles = self.store.titles({s.task_id for s in sessions if s.task_id})
        where = self._session_nodes() if sessions else {}
        return [
            {
                "sessionId": s.id,
                "taskId": s.task_id,
                "taskTitle": titles.get(s.task_id or "", ""),
                "role": s.role.value,
                "pid": s.pid,
                "contextTokens": s.context_tokens,
                "costUsd": s.cost_usd,
                "startedAt": s.wire()["startedAt"],
                # The Ray node it runs on; None on this machine (the local backend, and the
                # steward's and director's sessions, which run on the head).
                "node": where.get(s.id),
            }
            for s in sessions
        ]

    def _session_nodes(self) -> dict[str, dict[str, str]]:
        """Session id -> the Ray node it runs on (`nodeId`, `address`), from the running
        orchestrator's last report of its nodes; empty when it runs locally."""
        holder = self.store.lease_holder(LEASE_NAME, live_within_s=LEASE_TTL_S)
        nodes = self._cluster_nodes(holder) if holder is not None else None
        return {
            session_id: {"nodeId": node.node_id, "address": node.address}
            for node in nodes or []
            for session_id in node.sessions
        }

    # -- costs (issue 15) ----------------------------------------------------------------------

    def cost_report(self) -> CostReport:
        """Every session's spending, by task, plan, role and UTC day (summed in the store)."""
        return CostReport(
            total=self.store.cost_totals(),
            by_task=self.store.cost_by("task"),
            by_plan=self.store.cost_by("plan"),
            by_role=self.store.cost_by("role"),
            by_day=self.store.cost_by("day"),
        )

    # -- git views -----------------------------------------------------------------------------

    def target_branch(self) -> str:
        return resolve_target_branch(self.root, self.config.merge.targetBranch)

    def active_branches(self) -> dict[str, str]:
        """Task id -> branch, for tasks whose work is not landed yet (in progress, in review),
        read through the status index, not the whole board."""
        return self.store.active_branches()

    def orchestrator_running(self) -> bool:
        """Whether an orchestrator (its steward among it) runs for this repository, anywhere."""
        return self.store.lease_holder(LEASE_NAME, live_within_s=LEASE_TTL_S) is not None

    def forecast(self) -> Forecast:
        return forecast(self.root, self.target_branch(), self.active_branches())

    def forecast_json(self) -> dict[str, Any]:
        return self.forecast().to_json()

    def merge_diff(self, mr_id: str) -> dict[str, Any]:
        """The files a merge request changes (see :func:`stoneforge.diffs.merge_diff`)."""
        return diffs.merge_diff(
            self.root, self.store.get_merge_request(mr_id), self.target_branch()
        )

    def commit_diff(self, commit: str) -> dict[str, Any]:
        """The files one commit changes (see :func:`stoneforge.diffs.commit_diff`)."""
        return diffs.commit_diff(self.root, commit)

    # -- merge requests ------------------------------------------------------------------------

    def list_merge_requests(self, status: MergeStatus | None = None) -> list[MergeRequest]:
        return self.store.list_merge_requests(status)

    def get_merge_request(self, mr_id: str) -> MergeRequest:
        return self.store.get_merge_request(mr_id)

    def merge_checking(self) -> list[CheckingCandidate]:
        """The candidates the merge queue checks now, each with the base it is built on (with
        look-ahead, several at once: a speculative one on the candidate before it)."""
        return checking_now(
            self.root,
            self.store,
            lambda: TargetBranch(self.root, self.target_branch(), self.config.merge.remote).ref,
        )

    def flaky_checks(self) -> list[FlakyCheck]:
        """Check commands recorded flaky at least `merge.flakyReportAfter` times, most often
        first. Nothing is quarantined because of it: that is `merge.quarantine`, by hand."""
        found: dict[str, FlakyCheck] = {}
        last = 0
        while events := self.store.events_since(last, limit=5000):
            last = events[-1].id
            for event in events:
                command = event.data.get("command") if event.kind == "check.flaky" else None
                if not isinstance(command, str):
                    continue
                seen = found.setdefault(command, FlakyCheck(command=command, count=0))
                seen.count += 1
                seen.last_merge_request = event.entity_id
                seen.last_commit = event.data.get("commit")
        threshold = self.config.merge.flakyReportAfter
        flaky = [f for f in found.values() if f.count >= threshold]
        return sorted(flaky, key=lambda f: (-f.count, f.command))

    def approve_merge(self, mr_id: str) -> MergeRequest:
        """A person approves a merge request (see :func:`merge_decisions.approve`)."""
        target = TargetBranch(self.root, self.target_branch(), self.config.merge.remote)
        return merge_decisions.approve(self.store, self.root, self.config, target, mr_id)

    def reject_merge(self, mr_id: str, reason: str) -> MergeRequest:
        """A person refuses a merge request (see :func:`merge_decisions.reject`)."""
        return merge_decisions.reject(self.store, mr_id, reason)

    # -- orchestration -------------------------------------------------------------------------

    def orchestrator(
        self,
        *,
        max_concurrent: int | None = None,
        until_idle: bool = False,
        on_change: Callable[[], None] = lambda: None,
        agent_env: dict[str, str] | None = None,
        backend: str | None = None,
    ) -> Orchestrator:
        """An orchestrator for this repository; ``await orchestrator.run()`` to start it.

        ``agent_env`` is added to every agent process's environment (and only theirs): the
        demo points the agents at its scripted endpoint this way. ``backend`` overrides
        `orchestrator.backend`; with `ray` the slots default to the cluster's agent slots.
        """
        worker_provider = None
        if (backend or self.config.orchestrator.backend) == "ray":
            worker_provider = self._ray_provider()
            max_concurrent = max_concurrent or worker_provider.capacity
        return Orchestrator(
            self.root,
            self.config,
            self.store,
            max_concurrent=max_concurrent,
            until_idle=until_idle,
            on_change=on_change,
            agent_env=agent_env,
            worker_provider=worker_provider,
        )

    def _ray_provider(self) -> Any:
        if not self.config.merge.remote:  # the config refuses it; `--backend ray` gets here
            raise ConfigError(
                f"{self.root / CONFIG_RELPATH}: the Ray backend needs merge.remote (the git "
                "remote through which the cluster's nodes and this machine exchange task "
                "branches), e.g. `merge: {remote: origin}`"
            )
        from stoneforge.cluster.session import RayProvider  # imports Ray: only when asked for

        target = resolve_target_branch(self.root, self.config.merge.targetBranch)
        return RayProvider(
            root=self.root,
            config=self.config,
            target=target,
            on_nodes=lambda nodes: self.store.record_event(
                CLUSTER_NODES, "cluster", None, {"pid": os.getpid(), "nodes": nodes}
            ),
        )

    # -- status --------------------------------------------------------------------------------

    def status(self) -> StatusSummary:
        tasks, mrs, running = self.store.counts()
        stacking = self.config.orchestrator.stacking  # a blocker in review blocks nothing then
        blocked, ready = self.store.blocked_and_ready_counts(stacking=stacking)
        # A holder that was killed without releasing the lease runs nothing: not shown as running.
        holder = self.store.lease_holder(LEASE_NAME, live_within_s=LEASE_TTL_S)
        return StatusSummary(
            repository=str(self.root),
            tasks_by_status={status.value: tasks.get(status.value, 0) for status in TaskStatus},
            blocked=blocked,
            ready=ready,
            stacked={t.id: t.stacked_on for t in self.store.stacked_tasks()},
            running_sessions=running,
            merge_requests_by_status={s.value: mrs.get(s.value, 0) for s in MergeStatus},
            orchestrator=holder,
            # A pause is the running steward's: with no orchestrator nothing waits to land.
            landing_paused=latest_pause(self.store) if holder is not None else None,
            provider_unavailable=latest_outage(self.store) if holder is not None else None,
            cost_today=self.store.cost_totals(day=utc_today()),
            cost_total=self.store.cost_totals(),
            budget_holds=dispatch_holds(self.store, self.config.budgets),
            nodes=self._cluster_nodes(holder) if holder is not None else None,
            checking=self.merge_checking(),
            open_questions=self.store.open_questions(),
        )

    def _cluster_nodes(self, holder: dict[str, Any]) -> list[ClusterNode] | None:
        """The running orchestrator's Ray nodes and their slots (None: it runs locally)."""
        event = self.store.last_event(CLUSTER_NODES)
        if event is None or event.data.get("pid") != holder["pid"]:
            return None  # none, or an earlier orchestrator's
        return [ClusterNode.model_validate(node) for node in event.data.get("nodes", [])]

    def sandbox_status(self) -> SandboxStatus:
        """How agents run here (`agents.sandbox`): contained, or why not (a loud warning)."""
        return sandbox_report(self.config.agents.sandbox)

    def require_task(self, task_id: str) -> Task:
        try:
            return self.store.get_task(task_id)
        except NotFoundError:
            raise NotFoundError(f"no task with id {task_id!r} in {self.root}") from None
