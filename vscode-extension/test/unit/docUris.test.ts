import assert from "node:assert/strict";
import { test } from "node:test";
import { type DocTarget, diffUriParts, docUriParts, parseDiffUri, parseDocQuery } from "../../src/model/docUris";

test("documents are named for their tab and addressed by their query, odd ids included", () => {
  const targets: DocTarget[] = [
    { kind: "handoff", taskId: "t1", handoffKey: "h2" },
    { kind: "handoff", taskId: "t/1 x&y", handoffKey: "@0" },
    { kind: "checks", mrId: "mr1" },
    { kind: "forecast" },
  ];
  for (const t of targets) assert.deepEqual(parseDocQuery(docUriParts(t).query), t);
  assert.equal(docUriParts({ kind: "handoff", taskId: "t1", handoffKey: "h2" }).path, "/Handoff h2 of t1.md");
  assert.equal(docUriParts({ kind: "checks", mrId: "mr1" }).path, "/Checks of mr1.md");
  assert.equal(parseDocQuery("kind=nonsense"), undefined);
});

test("both sides of a diff have the file's own path (so no side reads as a rename); the query says which", () => {
  const original = diffUriParts({ mrId: "mr 1", side: "original", path: "src/a b.py" });
  const modified = diffUriParts({ mrId: "mr 1", side: "modified", path: "src/a b.py" });
  assert.equal(original.path, "/src/a b.py");
  assert.equal(original.path, modified.path);
  assert.notEqual(original.query, modified.query);
  assert.deepEqual(parseDiffUri(original.path, original.query), { mrId: "mr 1", side: "original", path: "src/a b.py" });
  assert.deepEqual(parseDiffUri(modified.path, modified.query), { mrId: "mr 1", side: "modified", path: "src/a b.py" });
  assert.equal(parseDiffUri("/x.py", "mr=mr1&side=sideways"), undefined);
  assert.equal(parseDiffUri("/x.py", "side=original"), undefined);
});
