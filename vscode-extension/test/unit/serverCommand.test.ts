import assert from "node:assert/strict";
import { test } from "node:test";
import { cannotStartMessage, findOnPath, resolveServerCommand, settingArgv, splitCommandLine } from "../../src/serverCommand";

const only = (...files: string[]) => (f: string) => files.includes(f);

test("the setting wins; `lsp --stdio` is appended", () => {
  const cmd = resolveServerCommand({ setting: "/venv/bin/sf", envPath: "/usr/bin", pythonInterpreter: "/py", workspaceFolder: "/w", isExecutable: only("/usr/bin/sf") });
  assert.deepEqual(cmd, { command: "/venv/bin/sf", args: ["lsp", "--stdio"], source: "the stoneforge.serverCommand setting" });
  const arr = resolveServerCommand({ setting: ["python3", "-m", "stoneforge"], envPath: "", pythonInterpreter: undefined, workspaceFolder: undefined });
  assert.deepEqual(arr?.args, ["-m", "stoneforge", "lsp", "--stdio"]);
});

test("then sf on PATH, then the interpreter, then the workspace venv", () => {
  const base = { setting: "", envPath: "/a:/b", workspaceFolder: "/w" };
  assert.equal(resolveServerCommand({ ...base, pythonInterpreter: "/py", isExecutable: only("/b/sf") })?.command, "/b/sf");
  const py = resolveServerCommand({ ...base, pythonInterpreter: "/py", isExecutable: only() });
  assert.deepEqual([py?.command, ...(py?.args ?? [])], ["/py", "-m", "stoneforge", "lsp", "--stdio"]);
  assert.equal(resolveServerCommand({ ...base, pythonInterpreter: undefined, isExecutable: only("/w/.venv/bin/sf") })?.command, "/w/.venv/bin/sf");
  assert.equal(resolveServerCommand({ ...base, pythonInterpreter: undefined, isExecutable: only() }), undefined);
});

test("command lines split on spaces but keep quoted parts", () => {
  assert.deepEqual(splitCommandLine(`"/opt/my venv/bin/python" -m stoneforge`), ["/opt/my venv/bin/python", "-m", "stoneforge"]);
  assert.deepEqual(splitCommandLine(`sf`), ["sf"]);
  assert.deepEqual(settingArgv(["sf"]), ["sf"]);
  assert.equal(settingArgv([]), undefined);
  assert.throws(() => settingArgv([1]), /array of non-empty strings/);
  assert.throws(() => settingArgv({}), /string or an array/);
});

test("findOnPath skips empty entries", () => {
  assert.equal(findOnPath("sf", "::/x", only("/x/sf")), "/x/sf");
  assert.equal(findOnPath("sf", undefined, only("/x/sf")), undefined);
});

test("the failure message names the command and the fix", () => {
  const cmd = { command: "/v/sf", args: ["lsp", "--stdio"], source: "`sf` on PATH" };
  const msg = cannotStartMessage(cmd, "Connection closed");
  assert.match(msg, /`\/v\/sf lsp --stdio` \(from `sf` on PATH\) could not start: Connection closed/);
  assert.match(msg, /sf init/);
  assert.match(msg, /stoneforge\.serverCommand/);
  assert.match(cannotStartMessage(cmd, "spawn /v/sf ENOENT"), /`\/v\/sf` \(from `sf` on PATH\) does not exist\. Install Stoneforge from its checkout/);
  assert.match(cannotStartMessage(cmd, "spawn /v/sf EACCES"), /is not executable/);
  assert.match(cannotStartMessage(undefined, "not found"), /pipx install <checkout>.*stoneforge-agents/);
});
