import assert from "node:assert/strict";
import { test } from "node:test";
import { checksSummary, mergeQueueTree, mrFlags } from "../../src/model/mergeQueueModel";
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
