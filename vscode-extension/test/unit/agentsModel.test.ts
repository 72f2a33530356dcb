import assert from "node:assert/strict";
import { test } from "node:test";
import { agentsTree } from "../../src/model/agentsModel";
import { agent, status } from "../fixtures";

const NOW = new Date("2026-11-27T20:03:05Z");

test("while serving: one row per busy agent, then the idle slots", () => {
  const rows = agentsTree(
    status({ serving: true, maxConcurrent: 3, agents: [agent({ sessionId: "s3", contextTokens: 5210, costUsd: 0.01 })] }),
    140_000,
    NOW,
  );
  assert.deepEqual(rows.map((r) => r.label), ["t1 Add a parser", "slot 2", "slot 3"]);
  assert.equal(rows[0]!.description, "worker s3 · 5.2k tokens (4%) · $0.01 · 3m 05s");
  assert.equal(rows[1]!.description, "idle");
});

test("stopped: a row that starts orchestration", () => {
  const [row] = agentsTree(status({ serving: false }), 140_000, NOW);
  assert.equal(row!.command!.command, "stoneforge.ui.start");
});

test("an orchestrator elsewhere is named, and its agents still listed", () => {
  const rows = agentsTree(
    status({ serving: false, orchestrator: { pid: 4242, host: "box", acquiredAt: "", heartbeatAt: "" }, agents: [agent({ sessionId: "s1", role: "steward", taskId: null })] }),
    140_000,
    NOW,
  );
  assert.equal(rows[0]!.label, "Orchestrator runs elsewhere (pid 4242 on box)");
  assert.equal(rows[1]!.label, "steward");
  assert.equal(rows[1]!.icon!.id, "git-merge");
});

test("running times tick by whole seconds and read sensibly at start", () => {
  const started = "2026-11-27T20:03:05.000Z";
  const at = (ms: number) => agentsTree(status({ serving: true, maxConcurrent: 1, agents: [agent({ sessionId: "s1", startedAt: started })] }), 140_000, new Date(Date.parse(started) + ms));
  assert.match(at(344)[0]!.description!, /just started$/);
  assert.match(at(1_700)[0]!.description!, / 1s$/);
  assert.match(at(65_900)[0]!.description!, / 1m 05s$/);
});

test("sessions whose process is gone are listed as interrupted under a stopped orchestration", () => {
  const rows = agentsTree(status({ serving: false, agents: [], interruptedSessions: [agent({ sessionId: "s7" })] }), 140_000, NOW);
  assert.deepEqual(rows.map((r) => r.label), ["Orchestration is stopped", "t1 Add a parser"]);
  assert.match(rows[1]!.description!, /interrupted/);
  assert.notEqual(rows[1]!.icon!.id, "loading~spin");
});

const node = (nodeId: string, address: string, busy: number, sessions: string[]) => ({ nodeId, address, agentSlots: 2, checkSlots: 1, busy, sessions });

test("on a Ray cluster the agents are grouped by the node they run on, the head's own sessions apart", () => {
  const st = status({
    serving: true,
    maxConcurrent: 4,
    nodes: [node("aaaaaaaaaaaa1", "10.0.0.2", 2, ["s1", "s2"]), node("bbbbbbbbbbbb2", "10.0.0.3", 0, [])],
    agents: [
      agent({ sessionId: "s1", node: { nodeId: "aaaaaaaaaaaa1", address: "10.0.0.2" } }),
      agent({ sessionId: "s2", taskId: "t2", taskTitle: "Use it", node: { nodeId: "aaaaaaaaaaaa1", address: "10.0.0.2" } }),
      agent({ sessionId: "s3", role: "steward", taskId: null, node: null }),
    ],
  });
  const rows = agentsTree(st, 140_000, NOW);
  assert.deepEqual(rows.map((r) => r.label), ["node 10.0.0.2", "node 10.0.0.3", "this machine (head)"]);
  assert.deepEqual(rows[0]!.children.map((r) => r.id), ["agent:s1", "agent:s2"]);
  assert.equal(rows[0]!.description, "aaaaaaaa · 2/2 agent slots busy · 1 check slot");
  assert.equal(rows[0]!.collapsible, "expanded");
  assert.deepEqual(rows[1]!.children, []);
  assert.equal(rows[1]!.description, "bbbbbbbb · 0/2 agent slots busy · 1 check slot");
  assert.deepEqual(rows[2]!.children.map((r) => r.id), ["agent:s3"]);
  // No idle-slot rows: each node says how busy it is.
  assert.ok(!rows.some((r) => r.label.startsWith("slot ")));
});

test("a session on a node the last report lost is still shown, under that node", () => {
  const st = status({ serving: true, nodes: [node("a1", "10.0.0.2", 0, [])], agents: [agent({ sessionId: "s9", node: { nodeId: "gone", address: "10.0.0.9" } })] });
  const rows = agentsTree(st, 140_000, NOW);
  assert.deepEqual(rows.map((r) => [r.label, r.children.map((c) => c.id)]), [["node 10.0.0.2", []], ["node 10.0.0.9", ["agent:s9"]]]);
  assert.match(rows[1]!.description!, /not in the cluster's last report/);
});

test("on one machine (no nodes) the agents stay a flat list", () => {
  for (const nodes of [null, undefined, []]) {
    const rows = agentsTree(status({ serving: true, maxConcurrent: 2, nodes, agents: [agent({ sessionId: "s1", node: null })] }), 140_000, NOW);
    assert.deepEqual(rows.map((r) => r.id), ["agent:s1", "message:idle:2"]);
  }
});
