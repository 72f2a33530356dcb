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

test("then sf on PATH, then a venv in the workspace or above it, then ~/.local/bin, then the interpreter", () => {
  const base = { setting: "", envPath: "/a:/b", workspaceFolder: "/src/stoneforge/vscode-extension", home: "/home/u" };
  const pick = (pythonInterpreter: string | undefined, ...files: string[]) => resolveServerCommand({ ...base, pythonInterpreter, isExecutable: only(...files) });
  assert.equal(pick("/py", "/b/sf", "/src/stoneforge/.venv/bin/sf")?.command, "/b/sf");
  // The extension host's PATH lacks it, but the checkout's scripts/setup made .venv/bin/sf.
  assert.equal(pick("/py", "/src/stoneforge/vscode-extension/.venv/bin/sf", "/src/stoneforge/.venv/bin/sf")?.command, "/src/stoneforge/vscode-extension/.venv/bin/sf");
  const above = pick("/py", "/src/stoneforge/.venv/bin/sf", "/home/u/.local/bin/sf");
  assert.deepEqual([above?.command, above?.source], ["/src/stoneforge/.venv/bin/sf", "/src/stoneforge's .venv"]);
  assert.equal(pick("/py", "/src/stoneforge/venv/bin/sf")?.command, "/src/stoneforge/venv/bin/sf");
  const pipx = pick("/py", "/home/u/.local/bin/sf");
  assert.deepEqual([pipx?.command, pipx?.source], ["/home/u/.local/bin/sf", "~/.local/bin (pipx, uv tool)"]);
  const py = pick("/py");
  assert.deepEqual([py?.command, ...(py?.args ?? [])], ["/py", "-m", "stoneforge", "lsp", "--stdio"]);
  assert.equal(pick(undefined), undefined);
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
  assert.match(msg, /stoneforge-agents/);
  assert.match(msg, /stoneforge\.serverCommand/);
  assert.match(cannotStartMessage(cmd, "spawn /v/sf ENOENT"), /`\/v\/sf` \(from `sf` on PATH\) does not exist\. Install it with `pipx install stoneforge-agents`/);
  assert.match(cannotStartMessage(cmd, "spawn /v/sf EACCES"), /is not executable/);
  const none = cannotStartMessage(undefined, "not found");
  assert.match(none, /`pipx install stoneforge-agents`.*`pipx install \.` in a Stoneforge checkout/);
  assert.doesNotMatch(none, /pip install stoneforge\b(?!-)/);
});
