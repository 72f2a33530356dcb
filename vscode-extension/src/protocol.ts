// The wire shapes of the Stoneforge language server (docs/protocol.md). Pure types: no `vscode`.

export type TaskStatus = "open" | "in_progress" | "review" | "merged" | "failed" | "cancelled" | "budget_exceeded";
export type PlanStatus = "draft" | "active";
export type SessionRole = "worker" | "steward" | "director";
export type SessionStatus = "running" | "completed" | "handed_off" | "crashed" | "failed";
export type MergeStatus =
  | "reviewing"
  | "pending"
  | "testing"
  | "awaiting_approval"
  | "merged"
  | "conflict"
  | "test_failed"
  | "rejected";

export interface Session {
  id: string;
  taskId: string | null;
  role: SessionRole;
  status: SessionStatus;
  pid: number | null;
  providerSessionId: string | null;
  contextTokens: number;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  startedAt: string;
  endedAt: string | null;
  error: string | null;
}

export interface Handoff {
  id: string | null;
  taskId: string | null;
  sessionId: string | null;
  done: string;
  remaining: string;
  filesTouched: string[];
  decisions: string[];
  failingTests: string[];
  nextStep: string;
  commit: string | null;
  source: string;
  createdAt: string;
}

export interface CheckRun {
  command: string;
  exitCode: number | null;
  durationS: number;
  outputTail: string;
  flaky: boolean;
}

export type ReviewVerdict = "approve" | "request_changes";

/** One comment of a steward review: a file of the change, a line of its new version. */
export interface ReviewComment {
  path: string;
  line: number | null;
  body: string;
}

export interface Review {
  id: string;
  mrId: string;
  taskId: string;
  round: number;
  verdict: ReviewVerdict;
  summary: string;
  comments: ReviewComment[];
  sessionId: string | null;
  headCommit: string | null;
  createdAt: string;
}

export interface MergeRequest {
  id: string;
  taskId: string;
  status: MergeStatus;
  branch: string;
  candidateCommit: string | null;
  mergedCommit: string | null;
  checks: CheckRun[];
  summary: string;
  reason: string | null;
  createdAt: string;
  mergedAt: string | null;
  /** The task branch's tip the request was made for (its diff once the branch is gone). */
  headCommit?: string | null;
  /** The steward's reviews, oldest first (absent from servers that predate reviews). */
  reviews?: Review[];
}

/** What a set of sessions spent (`tokens`: input, cached included, plus output). */
export interface CostTotals {
  sessions: number;
  inputTokens: number;
  outputTokens: number;
  tokens: number;
  costUsd: number;
}

export interface Task {
  id: string;
  title: string;
  description: string;
  planId: string | null;
  priority: number;
  effectivePriority: number;
  dependsOn: string[];
  status: TaskStatus;
  blocked: boolean;
  branch: string | null;
  worktree: string | null;
  attempts: number;
  createdAt: string;
  updatedAt: string | null;
  note: string | null;
  sessions: Session[];
  handoffs: Handoff[];
  mergeRequest: MergeRequest | null;
  /** What the task's sessions spent (absent from servers before budgets). */
  cost?: CostTotals;
  /** The task's own budget, set by a retry with a budget; null: the configured one. */
  budgetUsd?: number | null;
  budgetTokens?: number | null;
  /** Tool calls its agents were refused (escape attempts among them), oldest first. */
  refusals?: ToolRefusal[];
  /** Blockers in review its branch is stacked on (`orchestrator.stacking`). */
  stackedOn?: string[];
}

/** A refused tool call: by the Bash guard, the CLI's permission rules or the sandbox. */
export interface ToolRefusal {
  tool: string;
  /** The command or file tried, redacted and shortened. */
  tried: string;
  reason: string;
  paths: string[];
  sessionId: string | null;
  at: string;
}

export interface Plan {
  id: string;
  title: string;
  goal: string | null;
  status: PlanStatus;
  createdAt: string;
  taskIds: string[];
  /** What its tasks' and director's sessions spent (absent from servers before budgets). */
  cost?: CostTotals;
}

export interface TaskTree {
  plans: Array<Plan & { tasks: Task[] }>;
  unplanned: Task[];
  handoffAtTokens: number;
}

export interface Agent {
  sessionId: string;
  taskId: string | null;
  taskTitle: string;
  role: SessionRole;
  contextTokens: number;
  costUsd: number;
  startedAt: string;
  pid?: number | null;
}

/** Why landing waits for a checkout of the target (the user's, usually); see docs/protocol.md. */
export interface LandingPause {
  checkout: string;
  /** One line naming the checkout and the files: "/repo has uncommitted changes in a.py, b.py". */
  reason: string;
  files: string[];
  since: string;
}

/** No agent session starts: the provider failed or every credential rests; see docs/protocol.md. */
export interface ProviderOutage {
  reason: string;
  /** When one probe session (or the first rested credential) is let through; null while it runs. */
  nextTryAt: string | null;
  since: string;
  /** "provider unavailable, next try 00:41:10 (529 overloaded)" (times in UTC). */
  line: string;
}

export interface Status {
  repository: string;
  tasksByStatus: Partial<Record<TaskStatus, number>>;
  blocked: number;
  ready: number;
  runningSessions: number;
  mergeRequestsByStatus: Partial<Record<MergeStatus, number>>;
  orchestrator: { pid: number; host: string; acquiredAt: string; heartbeatAt: string } | null;
  serving: boolean;
  maxConcurrent: number;
  agents: Agent[];
  /** Marked running, but the process that ran them is gone: recovered at the next start. */
  interruptedSessions?: Agent[];
  /** Sent by the server beside the documented fields; the Tasks view's taskTree also carries it. */
  handoffAtTokens?: number;
  /** Set while the running orchestrator cannot land because a checkout of the target is dirty. */
  landingPaused?: LandingPause | null;
  /** Set while the running orchestrator starts no session: the provider is unavailable. */
  providerUnavailable?: ProviderOutage | null;
}

/** stoneforge/workspace: whether the folder uses Stoneforge yet (nothing is written until init). */
export interface WorkspaceState {
  repository: string | null;
  initialized: boolean;
  problem: string | null;
}

export interface InitResult {
  repository: string;
  created: string[];
}

export interface DiffFile {
  path: string;
  status: string;
  original: string | null;
  modified: string | null;
}

export interface MergeDiff {
  base: string;
  head: string;
  files: DiffFile[];
}

/** 1-based line range. */
export interface LineRange {
  start: number;
  count: number;
}

export interface ForecastFile {
  path: string;
  kinds: string[];
  binary: boolean;
  hunks: Array<{ merged: LineRange; ours: LineRange; theirs: LineRange }>;
}

export interface ForecastPair {
  /** Task ids, or the target branch's name for the target. For a pair with the target, `ours` is it. */
  ours: string;
  theirs: string;
  oursCommit: string;
  theirsCommit: string;
  conflict: boolean;
  error: string | null;
  files: ForecastFile[];
}

export interface Forecast {
  target: string;
  targetCommit: string;
  branches: Array<{ label: string; ref: string; commit: string }>;
  pairs: ForecastPair[];
  errors: Record<string, string>;
  durationS: number;
}

export interface ChangedParams {
  lastEventId: number;
  changes: Array<{ kind: string; entity: string; id: string | null }>;
  /** Present only when the batch paused (a LandingPause) or resumed (null) landing. */
  landingPaused?: LandingPause | null;
  /** Present only when the batch made the provider unavailable (a ProviderOutage) or available (null). */
  providerUnavailable?: ProviderOutage | null;
}

export interface CreateTaskParams {
  title: string;
  description?: string;
  planId?: string;
  priority?: number;
  dependsOn?: string[];
}

export interface CreatePlanParams {
  title: string;
  goal?: string;
  activate?: boolean;
}

/** The notification the server sends whenever the store changes. */
export const CHANGED_NOTIFICATION = "stoneforge/changed";

/** Custom request names, one per method of {@link StoneforgeApi}. */
export const Methods = {
  createTask: "stoneforge/createTask",
  createPlan: "stoneforge/createPlan",
  activatePlan: "stoneforge/activatePlan",
  cancelTask: "stoneforge/cancelTask",
  retryTask: "stoneforge/retryTask",
  listTasks: "stoneforge/listTasks",
  taskTree: "stoneforge/taskTree",
  handoffs: "stoneforge/handoffs",
  mergeRequests: "stoneforge/mergeRequests",
  mergeDiff: "stoneforge/mergeDiff",
  approveMerge: "stoneforge/approveMerge",
  rejectMerge: "stoneforge/rejectMerge",
  status: "stoneforge/status",
  serve: "stoneforge/serve",
  stop: "stoneforge/stop",
  forecast: "stoneforge/forecast",
  workspace: "stoneforge/workspace",
  init: "stoneforge/init",
} as const;
