// Items offered in quick picks, built from payloads (pure so the wording is tested).
import type { MergeRequest, Plan, Task } from "../protocol";
import { humanize } from "./format";
import { priorityLabel } from "./tasksModel";

export interface Choice<T> {
  label: string;
  description?: string;
  detail?: string;
  value: T;
}

export const PRIORITY_CHOICES: Choice<number>[] = [
  { label: "P1", description: "highest", value: 1 },
  { label: "P2", description: "high", value: 2 },
  { label: "P3", description: "normal (default)", value: 3 },
  { label: "P4", description: "low", value: 4 },
  { label: "P5", description: "lowest", value: 5 },
];
export const DEFAULT_PRIORITY = 3;

/** Tasks a new task may wait on: those that can still land (merged ones already have, cancelled ones never will). */
export function dependencyChoices(tasks: Task[]): Choice<string>[] {
  return tasks
    .filter((t) => t.status !== "cancelled" && t.status !== "merged")
    .map((t) => ({ label: t.title, description: `${t.id} · ${priorityLabel(t)} · ${humanize(t.status)}`, value: t.id }));
}

export function taskChoices(tasks: Task[]): Choice<Task>[] {
  return tasks.map((t) => ({
    label: t.title,
    description: `${t.id} · ${humanize(t.status)}`,
    ...(t.worktree ? { detail: t.worktree } : {}),
    value: t,
  }));
}

export function mergeRequestChoices(mrs: MergeRequest[], tasks: Pick<Task, "id" | "title">[]): Choice<MergeRequest>[] {
  const titles = new Map(tasks.map((t) => [t.id, t.title]));
  return mrs.map((mr) => ({
    label: titles.get(mr.taskId) ?? mr.branch,
    description: `${mr.id} · ${humanize(mr.status)} · ${mr.branch}`,
    value: mr,
  }));
}

/** Plans a new task may join, the active ones first, and "No plan". */
export function planChoices(plans: Array<Pick<Plan, "id" | "title" | "status">>): Choice<string | undefined>[] {
  const order = [...plans].sort((a, b) => Number(b.status === "active") - Number(a.status === "active"));
  return [
    { label: "No plan", description: "a task of its own", value: undefined },
    ...order.map((p) => ({ label: p.title, description: `${p.id} · ${p.status}${p.status === "draft" ? " (dispatched once activated)" : ""}`, value: p.id })),
  ];
}
