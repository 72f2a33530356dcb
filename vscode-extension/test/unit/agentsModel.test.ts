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
  assert.equal(rows[0]!.description, "worker s3 · 5.2k / 140k tokens (4%) · $0.01 · 3m 05s");
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
