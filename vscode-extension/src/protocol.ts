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
  /** Client side: rows (sessions, handoffs) its details would show, not fetched yet. */
  pendingChildren?: number;
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

/**
 * One task as `stoneforge/taskTree` and `stoneforge/changed` carry it: what a tree row shows.
 * Keys at their default (null, 0, false, []) are left out by the server.
 */
export interface LeanTask {
  id: string;
  title: string;
  status: TaskStatus;
  priority: number;
  effectivePriority: number;
  planId?: string | null;
  dependsOn?: string[];
  blocked?: boolean;
  branch?: string | null;
  worktree?: string | null;
  attempts?: number;
  note?: string | null;
  latestSession?: { id: string; role: SessionRole; status: SessionStatus; contextTokens?: number } | null;
  mergeRequest?: { id: string; status: MergeStatus } | null;
  sessionCount?: number;
  handoffCount?: number;
  refusalCount?: number;
  costUsd?: number;
  tokens?: number;
  /** Blockers in review its branch is stacked on (`orchestrator.stacking`). */
  stackedOn?: string[];
}

export type LeanPlan = Omit<Plan, "taskIds" | "cost">;

/** stoneforge/taskTree: the lean board and its version (the newest event it has seen). */
export interface LeanTaskTree {
  version: number;
  plans: Array<LeanPlan & { tasks: LeanTask[] }>;
  unplanned: LeanTask[];
  handoffAtTokens: number;
}

/** stoneforge/task: one task in full, with its lean row and the version it was read at. */
export interface TaskDetails extends Task {
  version: number;
  row: LeanTask | null;
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
  /** The Ray node the session runs on; null on this machine (absent from servers before #21). */
  node?: AgentNode | null;
}

/** Where a session of the Ray backend runs. */
export interface AgentNode {
  nodeId: string;
  address: string;
}

/** A node of the Ray backend's cluster, with its slots and the sessions running there. */
export interface ClusterNode {
  nodeId: string;
  address: string;
  agentSlots: number;
  checkSlots: number;
  busy: number;
  /** Ids of the sessions running there (absent from servers before the Agents view grouped by node). */
  sessions?: string[];
}

/** A worker's question the director could not answer, on a task still under way: the worker assumed. */
export interface OpenQuestion {
  taskId: string;
  taskTitle: string;
  question: string;
  error: string;
  askedAt: string | null;
}

/** Why landing waits for a checkout of the target (the user's, usually); see docs/protocol.md. */
export interface LandingPause {
  checkout: string;
  /** One line naming the checkout and the files: "/repo has uncommitted changes in a.py, b.py". */
  reason: string;
  files: string[];
  since: string;
}

/** A candidate the merge queue checks now (several at once with look-ahead, merge.parallelChecks). */
export interface CheckingCandidate {
  candidate: string;
  mergeRequests: string[];
  /** Its first parent: the target's tip, or the candidate of the batch checked before it. */
  base: string | null;
  onTarget: boolean;
  /** The merge requests of the candidate it is built on, when that one is checked now too. */
  onMergeRequests: string[];
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
  /** The Ray backend's nodes while an orchestrator runs with it; null: it runs on this machine. */
  nodes?: ClusterNode[] | null;
  /** Questions the director could not answer, on tasks not merged or cancelled. */
  openQuestions?: OpenQuestion[];
  /** The candidates the merge queue checks now, in landing order (several with look-ahead). */
  checking?: CheckingCandidate[];
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

/** stoneforge/commitDiff: what one commit changed against its first parent (mergeDiff's files). */
export interface CommitDiff extends MergeDiff {
  commit: string;
  subject: string;
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
  /** The board version the delta starts from; null: the server read the board whole (a gap). */
  previousVersion?: number | null;
  /** The board version after the delta (absent from servers before lean trees). */
  version?: number;
  /** The lean rows of the tasks the batch touched (and of those whose computed fields follow). */
  tasks?: LeanTask[];
  plans?: LeanPlan[];
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
  task: "stoneforge/task",
  handoffs: "stoneforge/handoffs",
  mergeRequests: "stoneforge/mergeRequests",
  mergeDiff: "stoneforge/mergeDiff",
  commitDiff: "stoneforge/commitDiff",
  approveMerge: "stoneforge/approveMerge",
  rejectMerge: "stoneforge/rejectMerge",
  status: "stoneforge/status",
  serve: "stoneforge/serve",
  stop: "stoneforge/stop",
  forecast: "stoneforge/forecast",
  workspace: "stoneforge/workspace",
  init: "stoneforge/init",
} as const;
