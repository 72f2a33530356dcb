import assert from "node:assert/strict";
import { test } from "node:test";
import { diffEntries } from "../../src/model/diffEntries";

test("an added file has no original side, a deleted one no modified side, a modified one both", () => {
  const entries = diffEntries([
    { path: "calc.py", status: "M", original: "a\n", modified: "b\n" },
    { path: "test_calc.py", status: "A", original: null, modified: "t\n" },
    { path: "old.py", status: "D", original: "o\n", modified: null },
    { path: "empty.txt", status: "A", original: null, modified: "" },
  ]);
  assert.deepEqual(entries, [
    { path: "calc.py", sides: ["original", "modified"] },
    { path: "test_calc.py", sides: ["modified"] },
    { path: "old.py", sides: ["original"] },
    { path: "empty.txt", sides: ["modified"] },
  ]);
});
