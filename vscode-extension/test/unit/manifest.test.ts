// The manifest and the code must agree: a command in a menu that is never registered, or a pure
// module that imports `vscode`, only shows up at run time in the editor. Catch both here.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { Methods } from "../../src/protocol";
import { extensionRoot } from "../fixtures";

const root = extensionRoot();
const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const declared = new Set<string>(manifest.contributes.commands.map((c: { command: string }) => c.command));

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}

test("every registered command is declared and every declared command is registered", () => {
  const code = sources(path.join(root, "src")).map((f) => fs.readFileSync(f, "utf8")).join("\n");
  const registered = new Set([...code.matchAll(/command\("(stoneforge\.ui\.[A-Za-z]+)"/g)].map((m) => m[1]!));
  assert.deepEqual([...registered].sort(), [...declared].sort());
});

test("UI commands never take a server command's id", () => {
  // The language client registers the server's `stoneforge.<method>` executeCommand commands
  // (docs/protocol.md) as VS Code commands; an extension command of the same id fails to register.
  for (const method of Object.keys(Methods)) assert.ok(!declared.has(`stoneforge.${method}`), method);
  for (const id of declared) assert.match(id, /^stoneforge\.ui\./);
});

test("menus only use declared commands and the declared views", () => {
  const views = new Set(manifest.contributes.views.stoneforge.map((v: { id: string }) => v.id));
  assert.deepEqual([...views], ["stoneforge.tasks", "stoneforge.mergeQueue", "stoneforge.agents"]);
  for (const [where, entries] of Object.entries<Array<{ command: string }>>(manifest.contributes.menus)) {
    for (const e of entries) assert.ok(declared.has(e.command), `${where}: ${e.command} is not declared`);
  }
  for (const w of manifest.contributes.viewsWelcome) assert.ok(views.has(w.view), w.view);
});

test("the issue's palette commands exist under the Stoneforge category", () => {
  const titles = manifest.contributes.commands.map((c: { category: string; title: string }) => `${c.category}: ${c.title}`);
  for (const t of ["Create Task", "Create Plan from Goal", "Start Orchestration", "Stop Orchestration", "Approve Merge", "Reject Merge", "Open Task Worktree", "Show Conflict Forecast", "Initialize Stoneforge Here"]) {
    assert.ok(titles.includes(`Stoneforge: ${t}`), t);
  }
});

test("pure modules do not import vscode", () => {
  const pure = [
    ...sources(path.join(root, "src", "model")),
    ...["api.ts", "protocol.ts", "serverCommand.ts", "restartPolicy.ts", "coalescer.ts"].map((f) => path.join(root, "src", f)),
  ];
  for (const f of pure) {
    assert.doesNotMatch(fs.readFileSync(f, "utf8"), /from "vscode"|require\("vscode"\)/, path.relative(root, f));
  }
});

test("engine and typings are pinned to VS Code 1.100", () => {
  assert.equal(manifest.engines.vscode, "^1.100.0");
  assert.equal(manifest.devDependencies["@types/vscode"], "~1.100.0");
});

test("every kind of row has a context menu, not only hover actions", () => {
  const entries = manifest.contributes.menus["view/item/context"] as Array<{ when: string; group?: string }>;
  const inMenu = entries.filter((e) => !e.group?.startsWith("inline"));
  // One contextValue of each row kind, as the models build them.
  const rows = ["plan plan-draft", "task task-open can-cancel", "session session-completed", "handoff", "mr mr-pending", "check", "agent agent-worker", "message stopped"];
  for (const value of rows) {
    const matched = inMenu.filter((e) => [...e.when.matchAll(/viewItem =~ \/(.+?)\/(?= |$)/g)].every((m) => new RegExp(m[1]!).test(value)));
    assert.ok(matched.length, `no context menu entry for a "${value}" row`);
  }
});

test("the server path setting is a plain string, so the Settings UI can edit it", () => {
  assert.equal(manifest.contributes.configuration.properties["stoneforge.serverCommand"].type, "string");
});

/** The menu entries whose `when` holds for a row of `view` with `contextValue` (other keys taken as true). */
function menuFor(view: string, contextValue: string, inline: boolean): string[] {
  const entries = manifest.contributes.menus["view/item/context"] as Array<{ command: string; when: string; group?: string }>;
  const holds = (clause: string): boolean => {
    const c = clause.trim();
    let m = /^view == (\S+)$/.exec(c);
    if (m) return view === m[1];
    m = /^view =~ \/(.+)\/$/.exec(c);
    if (m) return new RegExp(m[1]!).test(view);
    m = /^viewItem =~ \/(.+)\/$/.exec(c);
    if (m) return new RegExp(m[1]!).test(contextValue);
    return true;
  };
  return entries.filter((e) => !!e.group?.startsWith("inline") === inline && e.when.split("&&").every(holds)).map((e) => e.command);
}

test("a task's merge-request row in the Tasks view has the Merge Queue's actions", () => {
  const value = "mr mr-awaiting_approval can-approve can-reject has-checks";
  const want = ["stoneforge.ui.showDiff", "stoneforge.ui.showChecks", "stoneforge.ui.approveMerge", "stoneforge.ui.rejectMerge", "stoneforge.ui.copyId"];
  assert.deepEqual(new Set(menuFor("stoneforge.tasks", value, false)), new Set(menuFor("stoneforge.mergeQueue", value, false)));
  for (const c of want) assert.ok(menuFor("stoneforge.tasks", value, false).includes(c), c);
  assert.ok(menuFor("stoneforge.tasks", value, true).includes("stoneforge.ui.approveMerge"));
  // A task row is not a merge request's.
  assert.ok(!menuFor("stoneforge.tasks", "task task-review can-cancel", false).includes("stoneforge.ui.showDiff"));
});
