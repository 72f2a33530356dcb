// Status -> codicon (with a theme color), one table per kind of thing.
import type { MergeStatus, ReviewVerdict, SessionStatus, TaskStatus } from "../protocol";
import type { Icon } from "./treeNode";

const TASK: Record<TaskStatus, Icon> = {
  open: { id: "circle-large-outline" },
  in_progress: { id: "sync~spin", color: "charts.blue" },
  review: { id: "git-pull-request", color: "charts.purple" },
  merged: { id: "pass-filled", color: "charts.green" },
  failed: { id: "error", color: "charts.red" },
  cancelled: { id: "circle-slash", color: "disabledForeground" },
  budget_exceeded: { id: "credit-card", color: "charts.orange" },
};

const BLOCKED: Icon = { id: "lock", color: "charts.yellow" };

export function taskIcon(status: TaskStatus, blocked: boolean): Icon {
  if (status === "open" && blocked) return BLOCKED;
  return TASK[status] ?? { id: "question" };
}

const SESSION: Record<SessionStatus, Icon> = {
  running: { id: "loading~spin", color: "charts.blue" },
  completed: { id: "pass", color: "charts.green" },
  handed_off: { id: "debug-step-over", color: "charts.purple" },
  crashed: { id: "flame", color: "charts.red" },
  failed: { id: "error", color: "charts.red" },
};

export function sessionIcon(status: SessionStatus): Icon {
  return SESSION[status] ?? { id: "question" };
}

const MERGE: Record<MergeStatus, Icon> = {
  reviewing: { id: "eye", color: "charts.blue" },
  pending: { id: "clock" },
  testing: { id: "beaker", color: "charts.blue" },
  awaiting_approval: { id: "question", color: "charts.yellow" },
  merged: { id: "git-merge", color: "charts.green" },
  conflict: { id: "warning", color: "charts.orange" },
  test_failed: { id: "error", color: "charts.red" },
  rejected: { id: "circle-slash", color: "disabledForeground" },
};

export function mergeIcon(status: MergeStatus): Icon {
  return MERGE[status] ?? { id: "question" };
}

export function reviewIcon(verdict: ReviewVerdict): Icon {
  return verdict === "approve" ? { id: "pass", color: "charts.green" } : { id: "comment-unresolved", color: "charts.yellow" };
}

export function checkIcon(exitCode: number | null, flaky: boolean): Icon {
  if (exitCode === 0) return flaky ? { id: "pass", color: "charts.yellow" } : { id: "pass", color: "charts.green" };
  if (exitCode === null) return { id: "watch" };
  return { id: "error", color: "charts.red" };
}
