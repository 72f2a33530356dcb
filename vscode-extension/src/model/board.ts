// The lean board the views render from: stoneforge/taskTree once, then the deltas of
// stoneforge/changed, a full read again only after a gap. Task details (sessions, handoffs, ...)
// are fetched per task when its row is expanded. Pure data: no `vscode`.
import type { ChangedParams, LeanPlan, LeanTask, LeanTaskTree, MergeRequest, Plan, Session, Task, TaskDetails, TaskTree } from "../protocol";

/**
 * What a notification did to the board: `applied` (the rows are in), `stale` (the board is
 * already past it), `gap` (the board cannot follow: read the whole tree again).
 */
export type ApplyResult = "applied" | "stale" | "gap";

export class Board {
  /** The store's event id the board is current to; null until a tree was loaded (or after a gap). */
  version: number | null = null;
  handoffAtTokens = 140_000;
  private plans = new Map<string, LeanPlan>();
  private tasks = new Map<string, LeanTask>();
  private readonly details = new Map<string, TaskDetails>();
  private readonly shaped = new WeakMap<LeanTask, { details: TaskDetails | undefined; task: Task }>();

  /** A whole tree: replaces everything (details of unchanged tasks are kept). */
  load(tree: LeanTaskTree): void {
    this.plans = new Map(tree.plans.map((p) => [p.id, { id: p.id, title: p.title, goal: p.goal, status: p.status, createdAt: p.createdAt }]));
    const tasks = new Map<string, LeanTask>();
    for (const t of [...tree.plans.flatMap((p) => p.tasks), ...tree.unplanned]) tasks.set(t.id, t);
    // Keep only details still current to their row (a changed row drops its details).
    for (const [id, d] of this.details) if (!sameRow(d.row, tasks.get(id))) this.details.delete(id);
    this.tasks = new Map([...tasks.entries()].sort((a, b) => seq(a[0]) - seq(b[0])));
    this.handoffAtTokens = tree.handoffAtTokens;
    this.version = tree.version ?? null;
  }

  /** Apply a stoneforge/changed delta, when it follows on from the board's version. */
  apply(p: ChangedParams): ApplyResult {
    if (this.version === null || p.version === undefined || p.previousVersion === undefined) return "gap";
    if (p.version <= this.version) return "stale";
    if (p.previousVersion === null || p.previousVersion > this.version) return "gap";
    for (const plan of p.plans ?? []) this.plans.set(plan.id, plan);
    for (const row of p.tasks ?? []) {
      this.tasks.set(row.id, row); // a new task is the newest: last, as the server orders them
      this.details.delete(row.id);
    }
    this.version = p.version;
    return "applied";
  }

  /** Forget the board: the next render reads the whole tree. */
  invalidate(): void {
    this.version = null;
  }

  setDetails(d: TaskDetails): void {
    this.details.set(d.id, d);
    if (d.row) this.tasks.set(d.id, d.row);
  }

  hasDetails(id: string): boolean {
    return this.details.has(id);
  }

  lean(id: string): LeanTask | undefined {
    return this.tasks.get(id);
  }

  get size(): number {
    return this.tasks.size;
  }

  /** Every task, Task-shaped (details where fetched), in creation order. */
  allTasks(): Task[] {
    return [...this.tasks.values()].map((row) => {
      // Rows a delta did not touch are the same objects: convert each once, not per render.
      const details = this.details.get(row.id);
      const hit = this.shaped.get(row);
      if (hit && hit.details === details) return hit.task;
      const task = asTask(row, details);
      this.shaped.set(row, { details, task });
      return task;
    });
  }

  /** The tree the Tasks view renders: plans -> tasks, the tasks of no plan. */
  taskTree(): TaskTree {
    const byPlan = new Map<string | null, Task[]>();
    for (const t of this.allTasks()) {
      const key = t.planId && this.plans.has(t.planId) ? t.planId : null;
      (byPlan.get(key) ?? byPlan.set(key, []).get(key)!).push(t);
    }
    const plans = [...this.plans.values()].map((p) => {
      const tasks = byPlan.get(p.id) ?? [];
      return { ...p, taskIds: tasks.map((t) => t.id), tasks } as Plan & { tasks: Task[] };
    });
    return { plans, unplanned: byPlan.get(null) ?? [], handoffAtTokens: this.handoffAtTokens };
  }
}

function seq(id: string): number {
  return Number(id.replace(/^\D+/, "")) || 0;
}

function sameRow(a: LeanTask | null | undefined, b: LeanTask | undefined): boolean {
  return !!a && !!b && JSON.stringify(a) === JSON.stringify(b);
}

/**
 * A lean row as the Task the renderers take. Without details its sessions are just the latest
 * (what the row's description needs) and `pendingChildren` says how many rows expanding it shows.
 */
export function asTask(row: LeanTask, details?: TaskDetails): Task {
  if (details) return { ...details, ...rowFields(row) };
  const latest = row.latestSession;
  const sessions: Session[] = latest
    ? [
        {
          id: latest.id,
          taskId: row.id,
          role: latest.role,
          status: latest.status,
          pid: null,
          providerSessionId: null,
          contextTokens: latest.contextTokens ?? 0,
          inputTokens: 0,
          outputTokens: 0,
          costUsd: 0,
          startedAt: "",
          endedAt: null,
          error: null,
        },
      ]
    : [];
  const mr = row.mergeRequest;
  const mergeRequest: MergeRequest | null = mr
    ? { id: mr.id, taskId: row.id, status: mr.status, branch: row.branch ?? "", candidateCommit: null, mergedCommit: null, checks: [], summary: "", reason: null, createdAt: "", mergedAt: null }
    : null;
  const spent = row.costUsd ?? 0;
  return {
    ...rowFields(row),
    description: "",
    createdAt: "",
    updatedAt: null,
    sessions,
    handoffs: [],
    mergeRequest,
    ...(row.sessionCount ? { cost: { sessions: row.sessionCount, inputTokens: 0, outputTokens: 0, tokens: row.tokens ?? 0, costUsd: spent } } : {}),
    refusals: [],
    // Its merge request's row (checks, review) comes with the details too.
    pendingChildren: (row.sessionCount ?? 0) + (row.handoffCount ?? 0) + (mr ? 1 : 0),
  };
}

function rowFields(row: LeanTask) {
  return {
    id: row.id,
    title: row.title,
    status: row.status,
    priority: row.priority,
    effectivePriority: row.effectivePriority,
    planId: row.planId ?? null,
    dependsOn: row.dependsOn ?? [],
    blocked: row.blocked ?? false,
    branch: row.branch ?? null,
    worktree: row.worktree ?? null,
    attempts: row.attempts ?? 0,
    note: row.note ?? null,
    stackedOn: row.stackedOn ?? [],
  };
}
