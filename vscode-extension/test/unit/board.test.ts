import assert from "node:assert/strict";
import { test } from "node:test";
import { asTask, Board } from "../../src/model/board";
import { tasksTree } from "../../src/model/tasksModel";
import type { ChangedParams, LeanTask, LeanTaskTree, TaskDetails } from "../../src/protocol";
import { session, task } from "../fixtures";

const row = (id: string, extra: Partial<LeanTask> = {}): LeanTask => ({
  id,
  title: `task ${id}`,
  status: "open",
  priority: 3,
  effectivePriority: 3,
  ...extra,
});

const leanTree = (version: number, planned: LeanTask[], unplanned: LeanTask[] = []): LeanTaskTree => ({
  version,
  plans: [{ id: "p1", title: "Sprint", goal: null, status: "active", createdAt: "2026-12-01T00:00:00Z", tasks: planned }],
  unplanned,
  handoffAtTokens: 1000,
});

const delta = (previousVersion: number | null, version: number, tasks: LeanTask[]): ChangedParams => ({
  lastEventId: version,
  changes: [],
  previousVersion,
  version,
  tasks,
  plans: [],
});

test("a delta that follows on from the board's version replaces and adds rows", () => {
  const board = new Board();
  board.load(leanTree(10, [row("t1", { planId: "p1" }), row("t2", { planId: "p1", dependsOn: ["t1"], blocked: true })]));
  const result = board.apply(delta(10, 12, [row("t1", { planId: "p1", status: "merged" }), row("t2", { planId: "p1", dependsOn: ["t1"] }), row("t3", { title: "new" })]));
  assert.equal(result, "applied");
  assert.equal(board.version, 12);
  const tree = board.taskTree();
  assert.deepEqual(tree.plans[0]!.tasks.map((t) => [t.id, t.status, t.blocked]), [["t1", "merged", false], ["t2", "open", false]]);
  assert.deepEqual(tree.unplanned.map((t) => t.title), ["new"]);
  // The Tasks view renders it: t2 no longer waits.
  const [planRow] = tasksTree(tree);
  assert.equal(planRow!.children[1]!.description, "t2 · P3 · open");
});

test("a delta that starts inside the board's range still applies (the tree was read meanwhile)", () => {
  const board = new Board();
  board.load(leanTree(15, [row("t1", { planId: "p1" })]));
  assert.equal(board.apply(delta(10, 20, [row("t1", { planId: "p1", title: "renamed" })])), "applied");
  assert.equal(board.lean("t1")?.title, "renamed");
  assert.equal(board.version, 20);
});

test("a gap (a delta from past the board's version, or a board read whole) is detected, not applied", () => {
  const board = new Board();
  board.load(leanTree(10, [row("t1", { planId: "p1" })]));
  assert.equal(board.apply(delta(11, 14, [row("t1", { planId: "p1", title: "later" })])), "gap");
  assert.equal(board.lean("t1")?.title, "task t1", "rows of a delta after a gap are not applied");
  assert.equal(board.version, 10);
  assert.equal(board.apply(delta(null, 14, [])), "gap");
  // A server before lean trees sends no versions: read the tree again, as before.
  assert.equal(board.apply({ lastEventId: 14, changes: [] }), "gap");
  // A board with nothing loaded cannot apply anything.
  assert.equal(new Board().apply(delta(0, 1, [])), "gap");
});

test("a delta the board is already past is stale and changes nothing", () => {
  const board = new Board();
  board.load(leanTree(20, [row("t1", { planId: "p1", title: "current" })]));
  assert.equal(board.apply(delta(10, 18, [row("t1", { planId: "p1", title: "older" })])), "stale");
  assert.equal(board.lean("t1")?.title, "current");
});

test("a lean row renders without its details: the latest session's state, the MR, lazy children", () => {
  const lean = row("t1", {
    status: "in_progress",
    latestSession: { id: "s4", role: "worker", status: "running", contextTokens: 500 },
    mergeRequest: { id: "mr2", status: "test_failed" },
    sessionCount: 2,
    handoffCount: 1,
    costUsd: 0.5,
    tokens: 900,
  });
  const [node] = tasksTree({ plans: [], unplanned: [asTask(lean)], handoffAtTokens: 1000 });
  assert.equal(node!.description, "t1 · P3 · in progress · agent s4 working, 500 tokens (50%) · MR test failed · $0.50");
  assert.equal(node!.collapsible, "collapsed");
  assert.equal(node!.lazy, true);
  assert.deepEqual(node!.children, []);
  // With its details fetched, the same row has its children.
  const details: TaskDetails = {
    ...task({ id: "t1", status: "in_progress" }),
    sessions: [session({ id: "s3", status: "handed_off" }), session({ id: "s4", status: "running" })],
    version: 5,
    row: lean,
  };
  const board = new Board();
  board.load({ version: 5, plans: [], unplanned: [lean], handoffAtTokens: 1000 });
  board.setDetails(details);
  const [full] = tasksTree(board.taskTree());
  assert.equal(full!.lazy, undefined);
  assert.deepEqual(full!.children.map((c) => c.id), ["session:s3", "session:s4"]);
  // A delta that touches the task drops its details: they are fetched again when expanded.
  board.apply(delta(5, 6, [{ ...lean, sessionCount: 3 }]));
  assert.equal(board.hasDetails("t1"), false);
  assert.equal(tasksTree(board.taskTree())[0]!.lazy, true);
});

test("a plan of hundreds of tasks starts collapsed; rows a delta did not touch are converted once", () => {
  const many = Array.from({ length: 250 }, (_, i) => row(`t${i + 1}`, { planId: "p1" }));
  const board = new Board();
  board.load(leanTree(1, many));
  assert.equal(tasksTree(board.taskTree())[0]!.collapsible, "collapsed");
  const before = board.allTasks();
  board.apply(delta(1, 2, [row("t1", { planId: "p1", title: "changed" })]));
  const after = board.allTasks();
  assert.notEqual(after[0], before[0]);
  assert.equal(after[0]!.title, "changed");
  assert.equal(after[1], before[1], "an untouched row keeps its Task");
  board.load(leanTree(3, many.slice(0, 3)));
  assert.equal(tasksTree(board.taskTree())[0]!.collapsible, "expanded");
});
