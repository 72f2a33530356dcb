import assert from "node:assert/strict";
import { test } from "node:test";
import { statusBarView } from "../../src/model/statusBarModel";
import { agent, status } from "../fixtures";

test("serving: busy/total workers, ready tasks and the merge queue", () => {
  const v = statusBarView(
    status({ serving: true, maxConcurrent: 6, ready: 3, blocked: 1, agents: [agent({ sessionId: "s1" }), agent({ sessionId: "s2" }), agent({ sessionId: "s3", role: "steward" })], mergeRequestsByStatus: { pending: 1, awaiting_approval: 1, merged: 4 } }),
  );
  assert.equal(v.text, "$(hubot) Stoneforge 2/6  $(list-ordered) 3  $(git-merge) 2  $(bell-dot) 1");
  assert.match(v.tooltip, /^Needs you:\n- 1 merge request to approve: checked and waiting for your approval/);
  assert.deepEqual([v.needsYou.count, v.needsYou.summary], [1, "1 merge request to approve"]);
  assert.match(v.tooltip, /2 of 6 agents busy/);
  assert.match(v.tooltip, /3 tasks ready in the queue, 1 blocked/);
  assert.match(v.tooltip, /2 merge requests in the merge queue, 1 awaiting your approval/);
  assert.equal(v.attention, true);
});

test("stopped and empty", () => {
  const v = statusBarView(status({ serving: false, ready: 1 }));
  assert.equal(v.text, "$(hubot) Stoneforge stopped  $(list-ordered) 1");
  assert.equal(v.needsYou.count, 0);
  assert.match(v.tooltip, /orchestration stopped/);
  assert.equal(v.attention, false);
});

const pause = (files: string[]) => ({ checkout: "/repo", reason: `/repo has uncommitted changes in ${files.join(", ")}`, files, since: "2026-05-01T10:00:00Z" });

test("a paused landing names the files in the text and the reason in the tooltip, and wants attention", () => {
  const v = statusBarView(status({ serving: true, maxConcurrent: 2, mergeRequestsByStatus: { pending: 2 }, landingPaused: pause(["a.py", "b.py"]) }));
  assert.equal(v.text, "$(hubot) Stoneforge 0/2  $(list-ordered) 0  $(git-merge) 2  $(debug-pause) landing paused: a.py, b.py  $(bell-dot) 1");
  assert.match(v.tooltip, /\nlanding paused: \/repo has uncommitted changes in a\.py, b\.py\n/);
  assert.match(v.tooltip, /landing resumes by itself/);
  assert.equal(v.attention, true);
});

test("an unavailable provider shows the next try in the text and its line in the tooltip", () => {
  const line = "provider unavailable, next try 00:41:10 (529 overloaded)";
  const v = statusBarView(status({ serving: true, maxConcurrent: 4, providerUnavailable: { reason: "529 overloaded", nextTryAt: "2026-05-01T00:41:10Z", since: "2026-05-01T00:40:58Z", line } }));
  assert.equal(v.text, "$(hubot) Stoneforge 0/4  $(list-ordered) 0  $(cloud-offline) provider unavailable, next try 00:41:10");
  assert.match(v.tooltip, /^provider unavailable, next try 00:41:10 \(529 overloaded\)\nTasks wait in the queue/);
  assert.equal(v.attention, true);
  const probing = statusBarView(status({ providerUnavailable: { reason: "529 overloaded", nextTryAt: null, since: "2026-05-01T00:40:58Z", line } }));
  assert.match(probing.text, /provider unavailable, probing now$/);
  assert.doesNotMatch(statusBarView(status({ providerUnavailable: null })).text, /provider/);
});

test("many files: the first two and a count; no pause, no mention", () => {
  const v = statusBarView(status({ landingPaused: pause(["a.py", "b.py", "c.py", "d.py"]) }));
  assert.match(v.text, /landing paused: a\.py, b\.py \+2  \$\(bell-dot\) 1$/);
  const clear = statusBarView(status({ landingPaused: null }));
  assert.doesNotMatch(clear.text + clear.tooltip, /paused/);
  assert.equal(clear.attention, false);
});

test("needs you: approvals, failed tasks and a paused landing, counted and said", () => {
  const v = statusBarView(status({ tasksByStatus: { failed: 2 }, mergeRequestsByStatus: { awaiting_approval: 1 } }));
  assert.deepEqual([v.needsYou.count, v.needsYou.summary], [3, "1 merge request to approve, 2 failed tasks to retry or cancel"]);
  assert.equal(v.attention, true);
});

test("needs you: tasks stopped at their budget and questions the director could not answer, each said in the tooltip", () => {
  const question = { taskId: "t4", taskTitle: "Pick a database", question: "Postgres or SQLite?\nWe have both.", error: "the director crashed", askedAt: null };
  const v = statusBarView(status({ tasksByStatus: { budget_exceeded: 2, failed: 1, merged: 5 }, openQuestions: [question] }));
  assert.equal(v.needsYou.count, 4);
  assert.equal(v.needsYou.summary, "1 failed task to retry or cancel, 2 tasks stopped at their budget, 1 question the director could not answer");
  assert.match(v.text, /\$\(bell-dot\) 4$/);
  const tip = v.tooltip.split("\n");
  assert.deepEqual(tip.slice(0, 5), [
    "Needs you:",
    "- 1 failed task to retry or cancel: out of attempts: read the note in the Tasks view, then Retry or Cancel",
    "- 2 tasks stopped at their budget: work committed and handed off: Retry with a bigger budget, or Cancel",
    "- 1 question the director could not answer: the worker went on with its own assumption; check it",
    "    t4 asked “Postgres or SQLite?” (the director crashed)",
  ]);
  const one = statusBarView(status({ tasksByStatus: { budget_exceeded: 1 } }));
  assert.equal(one.needsYou.summary, "1 task stopped at its budget");
  assert.equal(one.attention, true);
});
