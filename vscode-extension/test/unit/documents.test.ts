import assert from "node:assert/strict";
import { test } from "node:test";
import { checksMarkdown } from "../../src/model/checksDoc";
import { forecastMarkdown } from "../../src/model/forecastDoc";
import { findHandoff, handoffKey, handoffMarkdown } from "../../src/model/handoffDoc";
import { parseCommandUri } from "../../src/model/docLinks";
import { handoff, mr, task } from "../fixtures";

/** Every Markdown link to a command: its text, command and arguments. */
function links(md: string): Array<{ label: string; command: string; args: unknown[] }> {
  return [...md.matchAll(/\[((?:\\.|[^\]])*)\]\((command:[^ )]+)(?: "[^"]*")?\)/g)].map((m) => ({ label: m[1]!, ...parseCommandUri(m[2]!)! }));
}

test("a handoff reads as done, remaining, next step, files, decisions, failing tests", () => {
  const md = handoffMarkdown(handoff(), task({ id: "t1", title: "Add a parser", branch: "sf/t1-add-parser" }));
  assert.match(md, /^# Handoff h1 — Add a parser \(\[t1\]\(command:stoneforge\.ui\.revealTask\?%5B%22t1%22%5D "Show task t1"\)\)$/m);
  assert.match(md, /written by the agent · session s1 · at commit \[`01234567`\]\(command:stoneforge\.ui\.showCommit\?%5B%220123456789abcdef%22%5D "[^"]*"\) · on `sf\/t1-add-parser`/);
  const order = ["## Done", "## Remaining", "## Next step", "## Files touched", "## Decisions", "## Failing tests"].map((h) => md.indexOf(h));
  assert.ok(order.every((i, k) => i > 0 && (k === 0 || i > order[k - 1]!)), "sections in order");
  assert.match(md, /## Done\n\nParsed the config keys\./);
  assert.deepEqual(links(md).filter((l) => l.command === "stoneforge.ui.openFile"), [
    { label: "`calc.py`", command: "stoneforge.ui.openFile", args: ["calc.py", "t1", null] },
    { label: "`tests/test_calc.py::test_bad`", command: "stoneforge.ui.openFile", args: ["tests/test_calc.py", "t1", null] },
  ]);
  assert.match(md, /- Use YAML safe_load/);

});

test("empty handoff fields say so instead of leaving blank sections", () => {
  const md = handoffMarkdown(handoff({ done: "", filesTouched: [], decisions: [], failingTests: [], nextStep: "", source: "orchestrator", commit: null }));
  assert.match(md, /written by the orchestrator from the facts/);
  assert.match(md, /## Done\n\n_nothing recorded_/);
  assert.match(md, /## Failing tests\n\n_none_/);
});

test("handoffs without an id are addressed by position", () => {
  const list = [handoff({ id: "h1" }), handoff({ id: null, done: "second" })];
  assert.equal(handoffKey(list[1]!, 1), "@1");
  assert.equal(findHandoff(list, "@1")!.done, "second");
  assert.equal(findHandoff(list, "h1")!.id, "h1");
  assert.equal(findHandoff(list, "h9"), undefined);
});

test("checks document shows each command with its output", () => {
  const md = checksMarkdown(
    mr({ id: "mr1", status: "test_failed", candidateCommit: "abcdef0123", reason: "pytest failed", checks: [{ command: "pytest -q", exitCode: 1, durationS: 3, outputTail: "1 failed\n", flaky: false }] }),
  );
  assert.match(md, /^# Checks of \[mr1\]\(command:stoneforge\.ui\.revealMergeRequest\?%5B%22mr1%22%5D "Show merge request mr1"\) \(sf\/t1-add-parser\)/);
  assert.match(md, /_\[task t1\]\([^)]*\) · test failed · 1 of 1 check failed · on commit \[`abcdef01`\]\([^)]*\)_/);
  assert.deepEqual(links(md).map((l) => [l.command, l.args]), [
    ["stoneforge.ui.revealMergeRequest", ["mr1"]],
    ["stoneforge.ui.revealTask", ["t1"]],
    ["stoneforge.ui.showCommit", ["abcdef0123"]],
  ]);
  assert.match(md, /## `pytest -q` — failed \(exit 1\), 3s\n\n```text\n1 failed\n```/);
  assert.match(checksMarkdown(mr({ id: "mr2" })), /No checks have run yet/);
});

test("forecast lists the conflicting pairs with files and line ranges", () => {
  const range = (start: number, count: number) => ({ start, count });
  const md = forecastMarkdown(
    {
      target: "main",
      targetCommit: "c0",
      branches: [{ label: "t1", ref: "sf/t1", commit: "c1" }, { label: "t3", ref: "sf/t3", commit: "c3" }],
      pairs: [
        { ours: "main", theirs: "t1", oursCommit: "c0", theirsCommit: "c1", conflict: false, error: null, files: [] },
        {
          ours: "t1",
          theirs: "t3",
          oursCommit: "c1",
          theirsCommit: "c3",
          conflict: true,
          error: null,
          files: [{ path: "calc.py", kinds: ["content"], binary: false, hunks: [{ merged: range(9, 8), ours: range(6, 3), theirs: range(9, 1) }] }],
        },
      ],
      errors: { t4: "no such branch" },
      durationS: 0.01,
    },
    new Map([["t1", "Add a parser"]]),
  );
  assert.match(md, /_2 active branches, 2 pairs checked with `git merge-tree`_/);
  assert.match(md, /One pair would conflict/);
  assert.match(md, /## \[t1\]\([^)]*\) \(Add a parser\) ↔ `t3`/);
  assert.match(md, /- \[`calc\.py`\]\([^)]*\) \(content\)\n  - t1 \[`lines 6–8`\]\([^)]*\), t3 \[`line 9`\]\([^)]*\)/);
  // The file in t1's checkout at t1's lines; t3 is no task of the board here, so the workspace's file.
  assert.deepEqual(links(md).filter((l) => l.command === "stoneforge.ui.openFile").map((l) => l.args), [
    ["calc.py", "t1", 6],
    ["calc.py", "t1", 6],
    ["calc.py", null, 9],
  ]);
  assert.doesNotMatch(md, /`main` ↔/);
  assert.match(md, /## Could not forecast\n\n- t4: no such branch/);
  const none = forecastMarkdown({ target: "main", targetCommit: "c0", branches: [], pairs: [], errors: {}, durationS: 0 }, new Map());
  assert.match(none, /No conflicts predicted/);
});

