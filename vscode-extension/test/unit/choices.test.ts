import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_PRIORITY, PRIORITY_CHOICES, dependencyChoices, mergeRequestChoices, planChoices } from "../../src/model/choices";
import { mr, plan, task } from "../fixtures";

test("priority choices are P1..P5 with P3 the default", () => {
  assert.deepEqual(PRIORITY_CHOICES.map((c) => c.value), [1, 2, 3, 4, 5]);
  assert.equal(PRIORITY_CHOICES.find((c) => c.value === DEFAULT_PRIORITY)?.label, "P3");
});

test("dependencies offer only tasks that can still land", () => {
  const choices = dependencyChoices([task({ id: "t1", title: "A" }), task({ id: "t2", status: "cancelled" }), task({ id: "t3", title: "C", status: "merged" }), task({ id: "t4", title: "D", status: "failed", priority: 1 })]);
  assert.deepEqual(choices.map((c) => [c.label, c.description, c.value]), [
    ["A", "t1 · P3 · open", "t1"],
    ["D", "t4 · P1 · failed", "t4"],
  ]);
});

test("plan choices: no plan first, then active plans before drafts", () => {
  const choices = planChoices([plan({ id: "p1", title: "Draft" }), plan({ id: "p2", title: "Live", status: "active" })]);
  assert.deepEqual(choices.map((c) => c.value), [undefined, "p2", "p1"]);
  assert.match(choices[2]!.description!, /dispatched once activated/);
});

test("merge request choices carry the task title", () => {
  const [c] = mergeRequestChoices([mr({ id: "mr1", status: "awaiting_approval" })], [task({ id: "t1", title: "Add a parser" })]);
  assert.equal(c!.label, "Add a parser");
  assert.equal(c!.description, "mr1 · awaiting approval · sf/t1-add-parser");
});
