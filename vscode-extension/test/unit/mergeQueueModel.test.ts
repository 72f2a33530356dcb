import assert from "node:assert/strict";
import { test } from "node:test";
import { checksSummary, mergeQueueTree, mrFlags } from "../../src/model/mergeQueueModel";
import { firstCommented, reviewThreads } from "../../src/model/reviewThreads";
import type { Review } from "../../src/protocol";
import { mr, task } from "../fixtures";

const check = (exitCode: number | null, flaky = false) => ({ command: "pytest -q", exitCode, durationS: 12.4, outputTail: "3 passed", flaky });

test("merge requests needing a person come first, finished ones last", () => {
  const nodes = mergeQueueTree(
    [mr({ id: "mr1", status: "merged" }), mr({ id: "mr2", status: "pending" }), mr({ id: "mr3", status: "awaiting_approval" }), mr({ id: "mr4", status: "conflict" })],
    [],
  );
  assert.deepEqual(nodes.map((n) => n.ref), [
    { kind: "mr", id: "mr3" },
    { kind: "mr", id: "mr4" },
    { kind: "mr", id: "mr2" },
    { kind: "mr", id: "mr1" },
  ]);
});

test("a row is labelled with its task's title and shows status and checks", () => {
  const [n] = mergeQueueTree([mr({ id: "mr1", status: "awaiting_approval", checks: [check(0), check(0)] })], [task({ id: "t1", title: "Add a parser" })]);
  assert.equal(n!.label, "Add a parser");
  assert.equal(n!.description, "mr1 · awaiting approval · 2/2 checks passed");
  assert.equal(n!.children.length, 2);
  assert.equal(n!.children[0]!.description, "passed · 12s");
  assert.deepEqual(n!.children[0]!.command!.arguments, ["mr1"]);
});

test("without a known task the branch names the row; a reason is shown", () => {
  const [n] = mergeQueueTree([mr({ id: "mr2", status: "rejected", reason: "needs tests" })], []);
  assert.equal(n!.label, "sf/t1-add-parser");
  assert.equal(n!.description, "mr2 · rejected · no checks run · needs tests");
});

test("inline actions follow the status", () => {
  assert.equal(mrFlags(mr({ id: "a", status: "awaiting_approval", checks: [check(0)] })), "mr mr-awaiting_approval can-approve can-reject has-checks");
  assert.equal(mrFlags(mr({ id: "a", status: "test_failed" })), "mr mr-test_failed can-reject");
  assert.equal(mrFlags(mr({ id: "a", status: "merged" })), "mr mr-merged");
});

test("checks summary counts failures", () => {
  assert.equal(checksSummary([]), "no checks run");
  assert.equal(checksSummary([check(0)]), "1/1 check passed");
  assert.equal(checksSummary([check(0), check(1), check(null)]), "2 of 3 checks failed");
});

test("a paused landing is the first row, naming the reason and every file", () => {
  const paused = { checkout: "/repo", reason: "/repo has uncommitted changes in a.py, b.py", files: ["a.py", "b.py"], since: "2026-05-01T10:00:00Z" };
  const nodes = mergeQueueTree([mr({ id: "mr3", status: "awaiting_approval" }), mr({ id: "mr2", status: "pending" })], [], paused);
  assert.equal(nodes.length, 3);
  const [top] = nodes;
  assert.equal(top!.label, "Landing paused");
  assert.equal(top!.description, "/repo has uncommitted changes in a.py, b.py");
  assert.match(top!.tooltip!, /- `a\.py`\n- `b\.py`/);
  assert.match(top!.tooltip!, /since 2026-05-01 10:00 UTC/);
  assert.deepEqual(top!.ref, { kind: "message" });
  assert.deepEqual(nodes.slice(1).map((n) => n.ref), [{ kind: "mr", id: "mr3" }, { kind: "mr", id: "mr2" }]);
  assert.equal(mergeQueueTree([mr({ id: "mr2", status: "pending" })], [], null)[0]!.ref.kind, "mr");
});

test("merged and rejected requests are hidden on request, counted in a last row", () => {
  const mrs = [mr({ id: "mr1", status: "merged" }), mr({ id: "mr2", status: "awaiting_approval" }), mr({ id: "mr3", status: "rejected" })];
  const rows = mergeQueueTree(mrs, [], null, true);
  assert.deepEqual(rows.map((r) => r.id), ["mr:mr2", "message:hidden"]);
  assert.equal(rows[1]!.label, "2 merged or rejected requests hidden");
  assert.equal(mergeQueueTree(mrs, []).length, 3);
});

const review = (over: Partial<Review> & { id: string }): Review => ({
  mrId: "mr1",
  taskId: "t1",
  round: 1,
  verdict: "request_changes",
  summary: "The parser splits on every plus sign.",
  comments: [{ path: "calc.py", line: 7, body: "split once: text.split('+', 1)" }],
  sessionId: "s3",
  headCommit: "abc",
  createdAt: "2026-05-01T10:00:00Z",
  ...over,
});

test("each review is a child row of its merge request, before the checks", () => {
  const reviews = [review({ id: "rv1" }), review({ id: "rv2", round: 2, verdict: "approve", comments: [], summary: "Fixed." })];
  const [n] = mergeQueueTree([mr({ id: "mr1", status: "awaiting_approval", checks: [check(0)], reviews })], []);
  assert.equal(n!.collapsible, "collapsed");
  assert.deepEqual(n!.children.map((c) => c.label), ["Review 1: changes requested", "Review 2: approved", "pytest -q"]);
  const [first, second] = n!.children;
  assert.equal(first!.description, "1 comment · The parser splits on every plus sign.");
  assert.match(first!.tooltip as string, /`calc.py:7`: split once/);
  assert.deepEqual(first!.ref, { kind: "review", mrId: "mr1", id: "rv1" });
  assert.deepEqual(first!.command!.arguments, ["mr1", "rv1"]);
  assert.equal(second!.description, "0 comments · Fixed.");
  assert.match(n!.tooltip as string, /reviews: changes requested, approved/);
});

test("a merge request under review ranks after the ones being checked", () => {
  const nodes = mergeQueueTree([mr({ id: "mr1", status: "pending" }), mr({ id: "mr2", status: "reviewing" }), mr({ id: "mr3", status: "testing" })], []);
  assert.deepEqual(nodes.map((n) => n.description?.split(" · ")[1]), ["testing", "reviewing", "pending"]);
});

test("review comments become threads on their file's line (0-based), for that file only", () => {
  const reviews = [
    review({ id: "rv1", comments: [{ path: "calc.py", line: 7, body: "split once" }, { path: "other.py", line: 2, body: "x" }] }),
    review({ id: "rv2", round: 2, verdict: "approve", comments: [{ path: "calc.py", line: null, body: "fine now" }] }),
  ];
  assert.deepEqual(reviewThreads(reviews, "calc.py"), [
    { line: 6, author: "Stoneforge steward", body: "split once", label: "Review 1: changes requested" },
    { line: 0, author: "Stoneforge steward", body: "fine now", label: "Review 2: approved" },
  ]);
  assert.deepEqual(reviewThreads(undefined, "calc.py"), []);
  assert.deepEqual(firstCommented(reviews[0]!), { path: "calc.py", line: 6 });
  assert.equal(firstCommented(review({ id: "x", comments: [] })), undefined);
});

test("the candidates checked at once are a row on top, each with the base it is built on", () => {
  const checking = [
    { candidate: "aaaaaaaaaaaa1", mergeRequests: ["mr1", "mr2"], base: "ffffffffffff0", onTarget: true, onMergeRequests: [] },
    { candidate: "bbbbbbbbbbbb2", mergeRequests: ["mr3"], base: "aaaaaaaaaaaa1", onTarget: false, onMergeRequests: ["mr1", "mr2"] },
  ];
  const mrs = [mr({ id: "mr1", status: "testing" }), mr({ id: "mr3", status: "testing" }), mr({ id: "mr4", status: "pending" })];
  const nodes = mergeQueueTree(mrs, [], null, false, checking);
  const [top] = nodes;
  assert.equal(top!.label, "Checking 2 candidates at once");
  assert.equal(top!.description, "mr1, mr2 · mr3");
  assert.deepEqual(top!.children.map((c) => [c.label, c.description]), [
    ["mr1, mr2", "on the target"],
    ["mr3", "ahead, on mr1, mr2"],
  ]);
  assert.match(top!.children[1]!.tooltip!, /rebuilt on the real tip/);
  const rows = new Map(nodes.slice(1).map((n) => [n.id, n.description]));
  assert.equal(rows.get("mr:mr3"), "mr3 · testing · ahead, on mr1, mr2 · no checks run");
  assert.equal(rows.get("mr:mr4"), "mr4 · pending · no checks run");
  assert.equal(mergeQueueTree(mrs, [], null, false, [])[0]!.ref.kind, "mr"); // nothing checked: no row
});
