import assert from "node:assert/strict";
import { test } from "node:test";
import { taskMrNode } from "../../src/model/mergeQueueModel";
import { tasksTree } from "../../src/model/tasksModel";
import type { Review } from "../../src/protocol";
import { mr, session, task, tree } from "../fixtures";

const review = (round: number, verdict: Review["verdict"]): Review => ({
  id: `r${round}`, mrId: "mr1", taskId: "t1", round, verdict, summary: "Looks right.", comments: [], sessionId: null, headCommit: null, createdAt: "2026-11-27T20:10:00Z",
});
const passed = { command: "pytest -q", exitCode: 0, durationS: 1.2, outputTail: "", flaky: false };

test("a task's merge request is its first child row: state, check result and the latest review's verdict", () => {
  const t = task({
    id: "t1",
    status: "review",
    sessions: [session({ id: "s1" })],
    mergeRequest: mr({ id: "mr1", status: "awaiting_approval", checks: [passed], reviews: [review(1, "request_changes"), review(2, "approve")] }),
  });
  const [row] = tasksTree(tree([], [t]));
  assert.equal(row!.collapsible, "collapsed");
  const [mrRow, sessionRow] = row!.children;
  assert.equal(sessionRow!.id, "session:s1");
  assert.equal(mrRow!.id, "task-mr:t1:mr1");
  assert.equal(mrRow!.label, "merge request mr1");
  assert.equal(mrRow!.description, "awaiting approval · 1/1 check passed · review approved");
  assert.deepEqual(mrRow!.ref, { kind: "mr", id: "mr1" });
  // The Merge Queue's flags, so its menus (Show Diff, Show Checks, Approve, Reject) apply here too.
  assert.deepEqual(mrRow!.contextValue.split(" "), ["mr", "mr-awaiting_approval", "can-approve", "can-reject", "has-checks"]);
  assert.match(mrRow!.tooltip!, /review 2: approved: Looks right\./);
});

test("the row reads well from the lean fields alone (id and state), and a failed check says so", () => {
  const lean = taskMrNode("t3", { id: "mr4", status: "testing" });
  assert.equal(lean.description, "testing");
  assert.deepEqual(lean.contextValue.split(" "), ["mr", "mr-testing"]);
  const failedChecks = taskMrNode("t3", { id: "mr4", status: "test_failed", checks: [passed, { ...passed, command: "ruff", exitCode: 1 }], reviews: [] });
  assert.equal(failedChecks.description, "test failed · 1 of 2 checks failed");
  assert.match(failedChecks.contextValue, /\bcan-reject\b/);
  assert.doesNotMatch(failedChecks.contextValue, /\bcan-approve\b/);
});

test("a task with no merge request has no such row", () => {
  const [row] = tasksTree(tree([], [task({ id: "t1", sessions: [session({ id: "s1" })] })]));
  assert.deepEqual(row!.children.map((c) => c.id), ["session:s1"]);
});
