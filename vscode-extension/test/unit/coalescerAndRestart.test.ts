import assert from "node:assert/strict";
import { test } from "node:test";
import { Coalescer } from "../../src/coalescer";
import { RestartPolicy } from "../../src/restartPolicy";

test("a burst of triggers runs the job at most twice, and the last run follows the last trigger", async () => {
  let runs = 0;
  let release: () => void = () => {};
  const c = new Coalescer(async () => {
    runs++;
    if (runs === 1) await new Promise<void>((r) => (release = r));
  });
  const first = c.trigger();
  const later = [c.trigger(), c.trigger(), c.trigger()];
  release();
  await Promise.all([first, ...later]);
  assert.equal(runs, 2);
  await c.trigger();
  assert.equal(runs, 3);
});

test("a failing job does not stop later runs", async () => {
  let runs = 0;
  const c = new Coalescer(async () => {
    runs++;
    throw new Error("boom");
  });
  await c.trigger();
  await c.trigger();
  assert.equal(runs, 2);
});

test("restart policy: restarts until too many crashes in the window", () => {
  const p = new RestartPolicy(2, 1000);
  assert.equal(p.shouldRestart(0), true);
  assert.equal(p.shouldRestart(10), true);
  assert.equal(p.shouldRestart(20), false);
  assert.equal(p.shouldRestart(2000), true, "old crashes age out");
  p.reset();
  assert.equal(p.shouldRestart(2001), true);
});
