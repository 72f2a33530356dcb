import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_PRIORITY, PRIORITY_CHOICES, dependencyChoices, mergeRequestChoices } from "../../src/model/choices";
import { mr, task } from "../fixtures";

test("priority choices are P1..P5 with P3 the default", () => {
  assert.deepEqual(PRIORITY_CHOICES.map((c) => c.value), [1, 2, 3, 4, 5]);
  assert.equal(PRIORITY_CHOICES.find((c) => c.value === DEFAULT_PRIORITY)?.label, "P3");
});

test("dependencies offer every task but cancelled ones", () => {
  const choices = dependencyChoices([task({ id: "t1", title: "A" }), task({ id: "t2", status: "cancelled" }), task({ id: "t3", title: "C", status: "merged", priority: 1 })]);
  assert.deepEqual(choices.map((c) => [c.label, c.description, c.value]), [
    ["A", "t1 · P3 · open", "t1"],
    ["C", "t3 · P1 · merged", "t3"],
  ]);
});

test("merge request choices carry the task title", () => {
  const [c] = mergeRequestChoices([mr({ id: "mr1", status: "awaiting_approval" })], [task({ id: "t1", title: "Add a parser" })]);
  assert.equal(c!.label, "Add a parser");
  assert.equal(c!.description, "mr1 · awaiting approval · sf/t1-add-parser");
});
