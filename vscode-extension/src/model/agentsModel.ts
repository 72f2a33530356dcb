// stoneforge/status -> rows of the Agents view: one per slot, busy ones with what they run.
import type { Agent, ClusterNode, Status } from "../protocol";
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
  const agents = status.agents.map((a) => ({ a, node: agentNode(a, handoffAt, now) }));
  if (status.nodes?.length) {
    // On a Ray cluster: one row per node with the sessions running there; the head's own
    // sessions (the steward's, the director's) under this machine. The nodes say how busy they are.
    rows.push(...nodeGroups(status.nodes, agents));
    rows.push(...(status.interruptedSessions ?? []).map(interruptedNode));
    return rows;
  }
  rows.push(...agents.map((x) => x.node));
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

/** The agents grouped by the Ray node they run on (nodes in the server's order), then this machine's. */
export function nodeGroups(nodes: ClusterNode[], agents: Array<{ a: Agent; node: TreeNode }>): TreeNode[] {
  const known = new Map(nodes.map((n) => [n.nodeId, n]));
  // A session on a node the last report no longer lists (it is being lost): still shown, under it.
  for (const { a } of agents) {
    if (a.node && !known.has(a.node.nodeId)) known.set(a.node.nodeId, { ...a.node, agentSlots: 0, checkSlots: 0, busy: 0 });
  }
  const rows = [...known.values()].map((n) => {
    const children = agents.filter(({ a }) => a.node?.nodeId === n.nodeId).map((x) => x.node);
    const slots = n.agentSlots ? `${n.busy}/${n.agentSlots} agent slots busy` : "not in the cluster's last report";
    return {
      id: `node:${n.nodeId}`,
      label: `node ${n.address}`,
      description: [n.nodeId.slice(0, 8), slots, n.checkSlots ? `${n.checkSlots} check ${n.checkSlots === 1 ? "slot" : "slots"}` : undefined].filter(Boolean).join(" · "),
      tooltip: `**Ray node ${n.address}** (${n.nodeId})\n\n- agent slots: ${n.busy} of ${n.agentSlots} busy\n- check slots: ${n.checkSlots}`,
      icon: { id: "server", color: children.length ? "charts.blue" : undefined },
      contextValue: "cluster-node",
      collapsible: children.length ? ("expanded" as const) : ("none" as const),
      ref: { kind: "message" as const },
      children,
    };
  });
  const local = agents.filter(({ a }) => !a.node).map((x) => x.node);
  if (local.length) {
    rows.push({
      id: "node:head",
      label: "this machine (head)",
      description: "the steward's and director's sessions",
      tooltip: "Sessions the head runs itself: the steward's (reviews, conflict resolution) and the director's.",
      icon: { id: "vm", color: "charts.blue" },
      contextValue: "cluster-node cluster-head",
      collapsible: "expanded",
      ref: { kind: "message" },
      children: local,
    });
  }
  return rows;
}
