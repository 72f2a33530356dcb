// stoneforge/taskTree -> rows of the Tasks view: plans -> tasks -> sessions and handoffs.
import type { Handoff, Plan, Session, Task, TaskStatus, TaskTree } from "../protocol";
import { contextShort, contextUse, cost, humanize, oneLine, plural, tokens, when } from "./format";
import { handoffKey } from "./handoffDoc";
import { sessionIcon, taskIcon } from "./icons";
import { taskMrNode } from "./mergeQueueModel";
import type { TreeNode } from "./treeNode";

/** Dependencies that no longer hold a task back (mirrors the server's FINISHED_TASK_STATUSES). */
const FINISHED: ReadonlySet<TaskStatus> = new Set(["merged", "cancelled"]);

export interface TreeOptions {
  /** Whether a task's checkout is still on disk (a landed task's is removed, its path kept). */
  worktreeExists?: (path: string) => boolean;
  /** Sessions marked running whose process is gone (status.interruptedSessions). */
  interrupted?: ReadonlySet<string>;
  /** Leave out merged and cancelled tasks (a row at the end says how many, and shows them). */
  hideFinished?: boolean;
}

/** More shown tasks than this and a plan starts collapsed (a 10,000-task board stays quick). */
export const BIG_PLAN = 200;

/** Statuses hidden by default: the work is done (or dropped), the row only adds length. */
export const HIDDEN_WHEN_FINISHED: ReadonlySet<TaskStatus> = new Set(["merged", "cancelled"]);

/** The row that says how many rows a filter hides, and shows them when clicked. */
export function hiddenRow(count: number, what: string): TreeNode {
  return {
    id: "message:hidden",
    label: `${count} ${what} hidden`,
    description: "click to show",
    icon: { id: "eye-closed", color: "disabledForeground" },
    contextValue: "message hidden-rows",
    collapsible: "none",
    ref: { kind: "message" },
    command: { command: "stoneforge.ui.showFinished", title: "Show Merged and Cancelled", arguments: [] },
    children: [],
  };
}

export function tasksTree(tree: TaskTree, opts: TreeOptions = {}): TreeNode[] {
  const byId = new Map<string, Task>();
  for (const t of [...tree.plans.flatMap((p) => p.tasks), ...tree.unplanned]) byId.set(t.id, t);
  const ctx: Ctx = {
    byId,
    handoffAt: tree.handoffAtTokens,
    worktreeExists: opts.worktreeExists ?? (() => true),
    interrupted: opts.interrupted ?? new Set(),
  };
  const shown = (tasks: Task[]) => (opts.hideFinished ? tasks.filter((t) => !HIDDEN_WHEN_FINISHED.has(t.status)) : tasks);
  const rows = [
    ...tree.plans.map((p) => planNode(p, p.tasks, shown(p.tasks), ctx)),
    ...shown(tree.unplanned).map((t) => taskNode(t, ctx)),
  ];
  const hidden = byId.size - [...tree.plans.flatMap((p) => shown(p.tasks)), ...shown(tree.unplanned)].length;
  return hidden ? [...rows, hiddenRow(hidden, hidden === 1 ? "merged or cancelled task" : "merged or cancelled tasks")] : rows;
}

interface Ctx {
  byId: Map<string, Task>;
  handoffAt: number;
  worktreeExists: (path: string) => boolean;
  interrupted: ReadonlySet<string>;
}

function planNode(plan: Plan, tasks: Task[], shown: Task[], ctx: Ctx): TreeNode {
  const merged = tasks.filter((t) => t.status === "merged").length;
  const tooltip = [`**${plan.title}** (${plan.id}, ${plan.status})`];
  if (plan.goal) tooltip.push("", plan.goal);
  if (plan.status === "draft") tooltip.push("", "_Draft: its tasks are not dispatched until the plan is activated._");
  return {
    id: `plan:${plan.id}`,
    label: plan.title,
    description: `${plan.id} · ${plan.status} · ${merged}/${plural(tasks.length, "task")} merged`,
    tooltip: tooltip.join("\n"),
    icon: plan.status === "active" ? { id: "project", color: "charts.blue" } : { id: "project" },
    contextValue: `plan plan-${plan.status}`,
    // A plan of hundreds of tasks starts collapsed: its rows are built when it is opened.
    collapsible: shown.length > BIG_PLAN ? "collapsed" : "expanded",
    ref: { kind: "plan", id: plan.id },
    children: shown.map((t) => taskNode(t, ctx)),
  };
}

/** Dependencies still unfinished, in declared order. */
export function blockedBy(task: Task, byId: Map<string, Task>): string[] {
  return task.dependsOn.filter((id) => {
    const dep = byId.get(id);
    return dep === undefined || !FINISHED.has(dep.status);
  });
}

/** One short phrase for what the task's agent is doing, or undefined when it has none. */
export function agentState(task: Task, handoffAt: number, interrupted: ReadonlySet<string> = new Set()): string | undefined {
  const running = task.sessions.find((s) => s.status === "running");
  if (running && interrupted.has(running.id)) return `agent ${running.id} interrupted (resumes when orchestration starts)`;
  if (running) return `agent ${running.id} working, ${contextShort(running.contextTokens, handoffAt)}`;
  if (task.status === "in_progress") return "waiting for an agent";
  return undefined;
}

export function priorityLabel(task: Task): string {
  return task.effectivePriority < task.priority
    ? `P${task.priority}→P${task.effectivePriority}`
    : `P${task.priority}`;
}

export function taskNode(task: Task, ctx: Ctx): TreeNode {
  const waitingOn = task.status === "open" ? blockedBy(task, ctx.byId) : [];
  const blocked = task.blocked || waitingOn.length > 0;
  const statusText = blocked && waitingOn.length ? `blocked by ${waitingOn.join(", ")}` : humanize(task.status);
  const agent = agentState(task, ctx.handoffAt, ctx.interrupted);
  // A merged task's merged MR says nothing new; any other MR state is worth a glance.
  const mrStatus = task.mergeRequest?.status;
  const mr = mrStatus && !(mrStatus === "merged" && task.status === "merged") ? `MR ${humanize(mrStatus)}` : undefined;
  const spent = task.cost?.costUsd ? cost(task.cost.costUsd) : undefined;
  const stacked = task.stackedOn?.length ? `stacked on ${task.stackedOn.join(", ")}` : undefined;
  const description = [task.id, priorityLabel(task), statusText, stacked, agent, mr, spent].filter(Boolean).join(" · ");

  const flags = ["task", `task-${task.status}`];
  if (task.worktree && ctx.worktreeExists(task.worktree)) flags.push("has-worktree");
  if (["open", "in_progress", "review", "failed", "budget_exceeded"].includes(task.status)) flags.push("can-cancel");
  if (["failed", "cancelled", "budget_exceeded"].includes(task.status)) flags.push("can-retry");

  // Without its details fetched, a task's rows come when it is expanded (Board, stoneforge/task).
  const lazy = (task.pendingChildren ?? 0) > 0;
  const children = lazy ? [] : taskChildren(task, ctx);
  return {
    id: `task:${task.id}`,
    label: task.title,
    description,
    tooltip: taskTooltip(task, statusText, agent),
    icon: taskIcon(task.status, blocked),
    contextValue: flags.join(" "),
    collapsible: children.length || lazy ? "collapsed" : "none",
    ref: { kind: "task", id: task.id, worktree: task.worktree },
    children,
    ...(lazy ? { lazy: true } : {}),
  };
}

function taskTooltip(task: Task, statusText: string, agent: string | undefined): string {
  const lines = [`**${task.title}** (${task.id})`, ""];
  if (task.description) lines.push(task.description, "");
  lines.push(`- status: ${statusText}`);
  lines.push(`- priority: ${priorityLabel(task)}`);
  if (task.dependsOn.length) lines.push(`- depends on: ${task.dependsOn.join(", ")}`);
  if (agent) lines.push(`- agent: ${agent}`);
  if (task.branch) lines.push(`- branch: \`${task.branch}\``);
  if (task.worktree) lines.push(`- worktree: \`${task.worktree}\``);
  if (task.attempts) lines.push(`- attempts: ${task.attempts}`);
  if (task.cost?.sessions) lines.push(`- cost: ${cost(task.cost.costUsd)}, ${tokens(task.cost.tokens)} tokens in ${plural(task.cost.sessions, "session")}`);
  if (task.budgetUsd != null) lines.push(`- its own budget: ${cost(task.budgetUsd)}`);
  if (task.mergeRequest) lines.push(`- merge request: ${task.mergeRequest.id} (${humanize(task.mergeRequest.status)})`);
  if (task.note) lines.push("", `_${task.note}_`);
  const refusals = task.refusals ?? [];
  if (refusals.length) {
    lines.push("", `**Refused tool calls (${refusals.length})**`);
    for (const r of refusals.slice(-5)) lines.push(`- ${r.tool}: \`${r.tried}\` (${r.reason})`);
  }
  return lines.join("\n");
}

interface HistoryRow {
  at: number;
  node: TreeNode;
  /** For a handoff: the session that wrote it. */
  from?: string | null;
  session?: string;
}

/** The rows under a task whose details were just fetched (a lazy row being expanded). */
export function taskChildRows(task: Task, handoffAt: number, interrupted: ReadonlySet<string> = new Set()): TreeNode[] {
  return taskChildren(task, { byId: new Map(), handoffAt, worktreeExists: () => true, interrupted });
}

/**
 * Sessions and handoffs of a task, oldest first, so the rows read as the task's history. Times
 * are kept to the millisecond, so a handoff and the next session can tie: a handoff then goes
 * after the session that wrote it and before any other.
 */
function taskChildren(task: Task, ctx: Ctx): TreeNode[] {
  const rows: HistoryRow[] = [
    ...task.sessions.map((s) => ({ at: Date.parse(s.startedAt), node: sessionNode(s, ctx.handoffAt, ctx.interrupted.has(s.id)), session: s.id })),
    ...task.handoffs.map((h, i) => ({ at: Date.parse(h.createdAt), node: handoffNode(task.id, h, i), from: h.sessionId })),
  ];
  const tie = (a: HistoryRow, b: HistoryRow): number => {
    if (a.session !== undefined && b.from !== undefined) return a.session === b.from ? -1 : 1;
    if (a.from !== undefined && b.session !== undefined) return a.from === b.session ? 1 : -1;
    return 0;
  };
  const history = rows.sort((a, b) => a.at - b.at || tie(a, b)).map((r) => r.node);
  // Its merge request on top: the state that may want a person, above the history that led to it.
  return task.mergeRequest ? [taskMrNode(task.id, task.mergeRequest), ...history] : history;
}

export function sessionNode(s: Session, handoffAt: number, interrupted = false): TreeNode {
  // Marked running, but the process that ran it is gone: nothing runs it until the next start.
  const state = interrupted ? "interrupted" : humanize(s.status);
  const description = [state, contextShort(s.contextTokens, handoffAt), cost(s.costUsd)].join(" · ");
  const tooltip = [
    `**${s.role} session ${s.id}** (${state})`,
    "",
    `- context: ${contextUse(s.contextTokens, handoffAt)}`,
    `- tokens in/out: ${s.inputTokens} / ${s.outputTokens}`,
    `- cost: ${cost(s.costUsd)}`,
    `- started: ${when(s.startedAt)}`,
  ];
  if (s.endedAt) tooltip.push(`- ended: ${when(s.endedAt)}`);
  if (s.error) tooltip.push("", `_${s.error}_`);
  if (interrupted) tooltip.push("", "_Its process is gone (the orchestrator was stopped hard). When orchestration starts, its work is saved and its task goes back to the queue._");
  return {
    id: `session:${s.id}`,
    label: `${s.role} ${s.id}`,
    description,
    tooltip: tooltip.join("\n"),
    icon: interrupted ? { id: "debug-disconnect", color: "charts.yellow" } : sessionIcon(s.status),
    contextValue: `session session-${interrupted ? "interrupted" : s.status}`,
    collapsible: "none",
    ref: { kind: "session", id: s.id },
    children: [],
  };
}

export function handoffNode(taskId: string, h: Handoff, index: number): TreeNode {
  const key = handoffKey(h, index);
  const label = h.id ? `handoff ${h.id}` : "handoff";
  return {
    id: `handoff:${taskId}:${key}`,
    label,
    description: h.nextStep ? `next: ${oneLine(h.nextStep, 60)}` : when(h.createdAt),
    tooltip: `**${label}** by ${h.source}${h.sessionId ? ` (session ${h.sessionId})` : ""}, ${when(h.createdAt)}\n\nClick to read it.`,
    icon: { id: "note" },
    contextValue: "handoff",
    collapsible: "none",
    command: { command: "stoneforge.ui.openHandoff", title: "Open Handoff", arguments: [taskId, key] },
    ref: { kind: "handoff", taskId, id: key },
    children: [],
  };
}
