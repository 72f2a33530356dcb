import assert from "node:assert/strict";
import { test } from "node:test";
import { failureToast, parseFailure } from "../../src/model/messages";

const note = "attempt 1: the agent crashed (exit 1)\nattempt 2: the agent crashed (exit 1)\nattempt 3: checks failed";

test("a failed task's message is recognised; others are not", () => {
  assert.deepEqual(parseFailure(`Stoneforge: task t3 failed. ${note}`), { taskId: "t3", note });
  assert.equal(parseFailure("Stoneforge: merge request mr1 passed its checks and waits for your approval."), undefined);
});

test("one failure: one short toast with the first line of its note", () => {
  assert.deepEqual(failureToast([{ taskId: "t3", note }]), { text: "Stoneforge: task t3 failed: attempt 1: the agent crashed (exit 1)", taskIds: ["t3"] });
});

test("a burst of failures: one toast naming every task once", () => {
  const toast = failureToast([{ taskId: "t3", note }, { taskId: "t4", note: "x" }, { taskId: "t3", note: "again" }]);
  assert.deepEqual(toast.taskIds, ["t3", "t4"]);
  assert.match(toast.text, /^Stoneforge: 2 tasks failed: t3, t4\. /);
  assert.doesNotMatch(toast.text, /\n/);
});
