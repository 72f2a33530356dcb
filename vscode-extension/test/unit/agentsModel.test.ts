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
