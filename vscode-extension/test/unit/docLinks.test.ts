import assert from "node:assert/strict";
import { test } from "node:test";
import { ENABLED_LINK_COMMANDS, commandUri, fileLink, linkIds, parseCommandUri } from "../../src/model/docLinks";

test("a command URI carries its arguments as a JSON array that survives odd paths", () => {
  const args = ["src/a (copy) b's.py", "t1", 7];
  const uri = commandUri("stoneforge.ui.openFile", args);
  assert.doesNotMatch(uri, /[() '"]/, "nothing that ends a Markdown link destination or title");
  assert.deepEqual(parseCommandUri(uri), { command: "stoneforge.ui.openFile", args });
  assert.equal(parseCommandUri("https://example.com"), undefined);
  // The link's target is exactly the URI: a Markdown parser takes everything up to the title.
  const link = fileLink("src/a (copy) b's.py", { taskId: "t1", line: 7 });
  assert.equal(/\]\((\S+) "/.exec(link)![1], uri);
});

test("ids in prose become links, code and other words stay as they are", () => {
  const out = linkIds("Needs t2 first (see mr3); `t9` is code, at2 and t2x are words, path/t4 too.");
  const found = [...out.matchAll(/\]\((command:[^ )]+)/g)].map((m) => parseCommandUri(m[1]!));
  assert.deepEqual(found, [
    { command: "stoneforge.ui.revealTask", args: ["t2"] },
    { command: "stoneforge.ui.revealMergeRequest", args: ["mr3"] },
  ]);
  assert.match(out, /`t9` is code, at2 and t2x are words, path\/t4 too\./);
  // Only known ids when the caller says which exist.
  assert.equal(linkIds("t7 and t8", { tasks: new Set(["t8"]) }).startsWith("t7 and ["), true);
});

test("the documents link only to the commands their panel enables", () => {
  assert.deepEqual([...ENABLED_LINK_COMMANDS].sort(), ["stoneforge.ui.openFile", "stoneforge.ui.revealMergeRequest", "stoneforge.ui.revealTask", "stoneforge.ui.showCommit"]);
});
