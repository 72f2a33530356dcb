// stoneforge/status -> rows of the Agents view: one per slot, busy ones with what they run.
import type { Agent, Status } from "../protocol";
import { contextShort, contextUse, cost, elapsed, secondsSince, when } from "./format";
import { messageNode, type TreeNode } from "./treeNode";

export function agentsTree(status: Status, handoffAt: number, now: Date): TreeNode[] {
  const rows: TreeNode[] = [];
  if (!status.serving) {
    const elsewhere = status.orchestrator;
    rows.push(
      elsewhere
        ? messageNode("elsewhere", `Orchestrator runs elsewhere (pid ${elsewhere.pid} on ${elsewhere.host})`, { id: "remote" })
        : {
            ...messageNode("stopped", "Orchestration is stopped", { id: "debug-pause" }, {
              command: "stoneforge.ui.start",
              title: "Start Orchestration",
              arguments: [],
            }),
            description: "click to start (asks first)",
            contextValue: "message stopped",
          },
    );
  }
  rows.push(...status.agents.map((a) => agentNode(a, handoffAt, now)));
  rows.push(...(status.interruptedSessions ?? []).map(interruptedNode));
  if (status.serving) {
    const workers = status.agents.filter((a) => a.role === "worker").length;
    for (let slot = workers + 1; slot <= status.maxConcurrent; slot++) {
      rows.push({ ...messageNode(`idle:${slot}`, `slot ${slot}`, { id: "circle-large-outline", color: "disabledForeground" }), description: "idle" });
    }
  }
  return rows;
}

export function agentNode(a: Agent, handoffAt: number, now: Date): TreeNode {
  const what = a.taskId ? `${a.taskId} ${a.taskTitle}`.trim() : a.role;
  return {
    id: `agent:${a.sessionId}`,
    label: what,
    description: [`${a.role} ${a.sessionId}`, contextShort(a.contextTokens, handoffAt), cost(a.costUsd), elapsed(secondsSince(a.startedAt, now))].join(" · "),
    tooltip: `**${a.role} session ${a.sessionId}**${a.pid ? ` (pid ${a.pid})` : ""}\n\n- task: ${what}\n- context: ${contextUse(a.contextTokens, handoffAt)}\n- cost: ${cost(a.costUsd)}\n- started ${when(a.startedAt)}`,
    icon: { id: a.role === "worker" ? "loading~spin" : a.role === "steward" ? "git-merge" : "compass", color: "charts.blue" },
    contextValue: `agent agent-${a.role}`,
    collapsible: "none",
    ref: { kind: "agent", id: a.sessionId },
    children: [],
  };
}

/** A session marked running whose process is gone: not working, waiting for the next start. */
export function interruptedNode(a: Agent): TreeNode {
  const what = a.taskId ? `${a.taskId} ${a.taskTitle}`.trim() : a.role;
  return {
    id: `interrupted:${a.sessionId}`,
    label: what,
    description: `${a.role} ${a.sessionId} · interrupted`,
    tooltip: `**${a.role} session ${a.sessionId}**: interrupted\n\nThe process that ran it is gone (the orchestrator was stopped hard). When orchestration starts, its work is saved and its task goes back to the queue.`,
    icon: { id: "debug-disconnect", color: "charts.yellow" },
    contextValue: "agent agent-interrupted",
    collapsible: "none",
    ref: { kind: "agent", id: a.sessionId },
    children: [],
  };
}

/** Whether the rows show a running time that goes stale (so the view should tick). */
export function hasRunningTime(status: Status): boolean {
  return status.agents.length > 0;
}
