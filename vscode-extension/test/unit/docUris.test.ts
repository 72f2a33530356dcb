import assert from "node:assert/strict";
import { test } from "node:test";
import { type DocTarget, diffPath, docPath, parseDiffPath, parseDocPath } from "../../src/model/docUris";

test("document paths round-trip, ids with odd characters included", () => {
  const targets: DocTarget[] = [
    { kind: "handoff", taskId: "t1", handoffKey: "h2" },
    { kind: "handoff", taskId: "t/1 x", handoffKey: "@0" },
    { kind: "checks", mrId: "mr1" },
    { kind: "forecast" },
  ];
  for (const t of targets) assert.deepEqual(parseDocPath(docPath(t)), t);
  assert.equal(docPath({ kind: "checks", mrId: "mr1" }), "/checks/mr1.md");
  assert.equal(parseDocPath("/nonsense/x.md"), undefined);
});

test("diff paths keep the file path last, so the editor picks its language", () => {
  const p = diffPath({ mrId: "mr1", side: "original", path: "src/a b.py" });
  assert.equal(p, "/mr1/original/src/a%20b.py");
  assert.deepEqual(parseDiffPath(p), { mrId: "mr1", side: "original", path: "src/a b.py" });
  assert.equal(parseDiffPath("/mr1/sideways/x.py"), undefined);
});
