// Builders for wire payloads with sensible defaults, so each test states only what it is about.
import * as fs from "node:fs";
import * as path from "node:path";
import type { Agent, Handoff, MergeRequest, Plan, Session, Status, Task, TaskTree } from "../src/protocol";

const T0 = "2026-11-27T20:00:00.000000Z";

export function task(over: Partial<Task> & { id: string }): Task {
  return {
    title: `Task ${over.id}`,
    description: "",
    planId: null,
    priority: 3,
    effectivePriority: over.priority ?? 3,
    dependsOn: [],
    status: "open",
    blocked: false,
    branch: null,
    worktree: null,
    attempts: 0,
    createdAt: T0,
    updatedAt: null,
    note: null,
    sessions: [],
    handoffs: [],
    mergeRequest: null,
    ...over,
  };
}

export function session(over: Partial<Session> & { id: string }): Session {
  return {
    taskId: "t1",
    role: "worker",
    status: "completed",
    pid: null,
    providerSessionId: null,
    contextTokens: 0,
    inputTokens: 0,
    outputTokens: 0,
    costUsd: 0,
    startedAt: T0,
    endedAt: null,
    error: null,
    ...over,
  };
}

export function handoff(over: Partial<Handoff> = {}): Handoff {
  return {
    id: "h1",
    taskId: "t1",
    sessionId: "s1",
    done: "Parsed the config keys.",
    remaining: "Error messages.",
    filesTouched: ["calc.py"],
    decisions: ["Use YAML safe_load"],
    failingTests: ["tests/test_calc.py::test_bad"],
    nextStep: "Write the error path",
    commit: "0123456789abcdef",
    source: "agent",
    createdAt: "2026-11-27T20:05:00.000000Z",
    ...over,
  };
}

export function plan(over: Partial<Plan> & { id: string }): Plan {
  return { title: `Plan ${over.id}`, goal: null, status: "draft", createdAt: T0, taskIds: [], ...over };
}

export function mr(over: Partial<MergeRequest> & { id: string }): MergeRequest {
  return {
    taskId: "t1",
    status: "pending",
    branch: "sf/t1-add-parser",
    candidateCommit: null,
    mergedCommit: null,
    checks: [],
    summary: "",
    reason: null,
    createdAt: T0,
    mergedAt: null,
    ...over,
  };
}

export function tree(plans: Array<Plan & { tasks: Task[] }>, unplanned: Task[], handoffAtTokens = 140_000): TaskTree {
  return { plans, unplanned, handoffAtTokens };
}

export function agent(over: Partial<Agent> & { sessionId: string }): Agent {
  return { taskId: "t1", taskTitle: "Add a parser", role: "worker", contextTokens: 0, costUsd: 0, startedAt: T0, ...over };
}

export function status(over: Partial<Status> = {}): Status {
  return {
    repository: "/repo",
    tasksByStatus: {},
    blocked: 0,
    ready: 0,
    runningSessions: 0,
    mergeRequestsByStatus: {},
    orchestrator: null,
    serving: false,
    maxConcurrent: 4,
    agents: [],
    ...over,
  };
}

/** vscode-extension/, found from wherever the (compiled) test runs. */
export function extensionRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, "package.json");
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, "utf8")).name === "stoneforge") return dir;
  }
  throw new Error(`no vscode-extension/package.json above ${__dirname}`);
}
