// stoneforge/taskTree -> rows of the Tasks view: plans -> tasks -> sessions and handoffs.
import type { Handoff, Plan, Session, Task, TaskStatus, TaskTree } from "../protocol";
import { contextUse, cost, humanize, oneLine, plural, when } from "./format";
import { handoffKey } from "./handoffDoc";
import { sessionIcon, taskIcon } from "./icons";
import type { TreeNode } from "./treeNode";

/** Dependencies that no longer hold a task back (mirrors the server's FINISHED_TASK_STATUSES). */
const FINISHED: ReadonlySet<TaskStatus> = new Set(["merged", "cancelled"]);

export function tasksTree(tree: TaskTree): TreeNode[] {
  const byId = new Map<string, Task>();
  for (const t of [...tree.plans.flatMap((p) => p.tasks), ...tree.unplanned]) byId.set(t.id, t);
  const ctx: Ctx = { byId, handoffAt: tree.handoffAtTokens };
  return [
    ...tree.plans.map((p) => planNode(p, p.tasks, ctx)),
    ...tree.unplanned.map((t) => taskNode(t, ctx)),
  ];
}

interface Ctx {
  byId: Map<string, Task>;
  handoffAt: number;
}

function planNode(plan: Plan, tasks: Task[], ctx: Ctx): TreeNode {
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
    collapsible: "expanded",
    ref: { kind: "plan", id: plan.id },
    children: tasks.map((t) => taskNode(t, ctx)),
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
export function agentState(task: Task, handoffAt: number): string | undefined {
  const running = task.sessions.find((s) => s.status === "running");
  if (running) return `agent ${running.id} working, ${contextUse(running.contextTokens, handoffAt)}`;
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
  const agent = agentState(task, ctx.handoffAt);
  // A merged task's merged MR says nothing new; any other MR state is worth a glance.
  const mrStatus = task.mergeRequest?.status;
  const mr = mrStatus && !(mrStatus === "merged" && task.status === "merged") ? `MR ${humanize(mrStatus)}` : undefined;
  const description = [task.id, priorityLabel(task), statusText, agent, mr].filter(Boolean).join(" · ");

  const flags = ["task", `task-${task.status}`];
  if (task.worktree) flags.push("has-worktree");
  if (["open", "in_progress", "review", "failed"].includes(task.status)) flags.push("can-cancel");
  if (["failed", "cancelled"].includes(task.status)) flags.push("can-retry");

  const children = taskChildren(task, ctx.handoffAt);
  return {
    id: `task:${task.id}`,
    label: task.title,
    description,
    tooltip: taskTooltip(task, statusText, agent),
    icon: taskIcon(task.status, blocked),
    contextValue: flags.join(" "),
    collapsible: children.length ? "collapsed" : "none",
    ref: { kind: "task", id: task.id, worktree: task.worktree },
    children,
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

/**
 * Sessions and handoffs of a task, oldest first, so the rows read as the task's history. Times
 * are kept to the millisecond, so a handoff and the next session can tie: a handoff then goes
 * after the session that wrote it and before any other.
 */
function taskChildren(task: Task, handoffAt: number): TreeNode[] {
  const rows: HistoryRow[] = [
    ...task.sessions.map((s) => ({ at: Date.parse(s.startedAt), node: sessionNode(s, handoffAt), session: s.id })),
    ...task.handoffs.map((h, i) => ({ at: Date.parse(h.createdAt), node: handoffNode(task.id, h, i), from: h.sessionId })),
  ];
  const tie = (a: HistoryRow, b: HistoryRow): number => {
    if (a.session !== undefined && b.from !== undefined) return a.session === b.from ? -1 : 1;
    if (a.from !== undefined && b.session !== undefined) return a.from === b.session ? 1 : -1;
    return 0;
  };
  return rows.sort((a, b) => a.at - b.at || tie(a, b)).map((r) => r.node);
}

export function sessionNode(s: Session, handoffAt: number): TreeNode {
  const description = [humanize(s.status), contextUse(s.contextTokens, handoffAt), cost(s.costUsd)].join(" · ");
  const tooltip = [
    `**${s.role} session ${s.id}** (${humanize(s.status)})`,
    "",
    `- context: ${contextUse(s.contextTokens, handoffAt)}`,
    `- tokens in/out: ${s.inputTokens} / ${s.outputTokens}`,
    `- cost: ${cost(s.costUsd)}`,
    `- started: ${when(s.startedAt)}`,
  ];
  if (s.endedAt) tooltip.push(`- ended: ${when(s.endedAt)}`);
  if (s.error) tooltip.push("", `_${s.error}_`);
  return {
    id: `session:${s.id}`,
    label: `${s.role} ${s.id}`,
    description,
    tooltip: tooltip.join("\n"),
    icon: sessionIcon(s.status),
    contextValue: `session session-${s.status}`,
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
