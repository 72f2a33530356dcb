import assert from "node:assert/strict";
import { test } from "node:test";
import { contextShort, contextUse, cost, duration, humanize, oneLine, secondsSince, shortCommand, tokens, when } from "../../src/model/format";

test("tokens are compact", () => {
  assert.equal(tokens(950), "950");
  assert.equal(tokens(52_100), "52.1k");
  assert.equal(tokens(140_000), "140k");
  assert.equal(tokens(1_250_000), "1.25M");
});

test("context use shows the share of the handoff threshold", () => {
  assert.equal(contextUse(52_100, 140_000), "52.1k / 140k tokens (37%)");
  assert.equal(contextUse(0, 140_000), "0 / 140k tokens (0%)");
  assert.equal(contextUse(500, 0), "500 tokens");
  assert.equal(contextShort(52_100, 140_000), "52.1k tokens (37%)");
  assert.equal(shortCommand("/work/r/.venv/bin/python -m pytest -q tests/x.py"), "python -m pytest -q tests/x.py");
  assert.equal(shortCommand("npm test -- --dir /tmp/a/b"), "npm test -- --dir /tmp/a/b");
  assert.equal(shortCommand("cd sub && /r/.venv/bin/pytest -q"), "cd sub && pytest -q");
  assert.equal(shortCommand("git --version"), "git --version");
});

test("cost never rounds a cheap session to zero", () => {
  assert.equal(cost(0), "$0");
  assert.equal(cost(0.004), "$0.004");
  assert.equal(cost(0.4199), "$0.42");
});

test("durations and times read like a person writes them", () => {
  assert.equal(duration(0.012), "12 ms");
  assert.equal(duration(42), "42s");
  assert.equal(duration(185), "3m 05s");
  assert.equal(duration(3720), "1h 02m");
  assert.equal(secondsSince("2026-11-27T20:00:00Z", new Date("2026-11-27T20:01:30Z")), 90);
  assert.equal(secondsSince("2026-11-27T20:00:00Z", new Date("2026-11-27T19:00:00Z")), 0);
  assert.equal(when("2026-11-27T20:03:05.765000Z"), "2026-11-27 20:03 UTC");
  assert.equal(when(null), "");
});

test("statuses and long texts are shortened for a row", () => {
  assert.equal(humanize("awaiting_approval"), "awaiting approval");
  assert.equal(oneLine("first line\nsecond"), "first line");
  assert.equal(oneLine("x".repeat(100), 10), `${"x".repeat(9)}…`);
});
