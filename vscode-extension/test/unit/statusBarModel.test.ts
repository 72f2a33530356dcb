import assert from "node:assert/strict";
import { test } from "node:test";
import { statusBarView } from "../../src/model/statusBarModel";
import { agent, status } from "../fixtures";

test("serving: busy/total workers, ready tasks and the merge queue", () => {
  const v = statusBarView(
    status({ serving: true, maxConcurrent: 6, ready: 3, blocked: 1, agents: [agent({ sessionId: "s1" }), agent({ sessionId: "s2" }), agent({ sessionId: "s3", role: "steward" })], mergeRequestsByStatus: { pending: 1, awaiting_approval: 1, merged: 4 } }),
  );
  assert.equal(v.text, "$(hubot) 2/6  $(list-ordered) 3  $(git-merge) 2");
  assert.match(v.tooltip, /2 of 6 agents busy/);
  assert.match(v.tooltip, /3 tasks ready in the queue, 1 blocked/);
  assert.match(v.tooltip, /2 merge requests in the merge queue, 1 awaiting your approval/);
  assert.equal(v.attention, true);
});

test("stopped and empty", () => {
  const v = statusBarView(status({ serving: false, ready: 1 }));
  assert.equal(v.text, "$(hubot) stopped  $(list-ordered) 1");
  assert.match(v.tooltip, /orchestration stopped/);
  assert.equal(v.attention, false);
});
