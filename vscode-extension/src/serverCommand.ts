// Which command starts the language server. Order: the `stoneforge.serverCommand` setting, `sf` on
// PATH, a `.venv/bin/sf` (or `venv/`) in the workspace folder or a folder above it (a Stoneforge
// checkout set up with scripts/setup), `~/.local/bin/sf` (pipx and uv tool install there), the
// selected Python interpreter's `-m stoneforge`. The extension host's PATH comes from the login
// shell, which often lacks the user's interactive additions, so the PATH lookup alone is not enough.
// `lsp --stdio` is appended to whatever runs `sf`. No `vscode` import: the caller passes in what it
// learned from the editor.
import * as fs from "node:fs";
import * as path from "node:path";

export const SERVER_ARGS = ["lsp", "--stdio"] as const;
export const INTERPRETER_SOURCE = "the selected Python interpreter";

export interface ServerCommand {
  command: string;
  args: string[];
  /** Where it came from, for the log and for error messages. */
  source: string;
}

export interface ResolveInput {
  setting: unknown;
  /** PATH as the extension host sees it. */
  envPath: string | undefined;
  pythonInterpreter: string | undefined;
  workspaceFolder: string | undefined;
  /** The user's home directory, for `~/.local/bin/sf`. */
  home?: string | undefined;
  isExecutable?: (file: string) => boolean;
}

/** Where an installed `sf` may be that PATH may miss, most specific first. */
export function sfCandidates(workspaceFolder: string | undefined, home: string | undefined): Array<{ file: string; source: string }> {
  const out: Array<{ file: string; source: string }> = [];
  if (workspaceFolder) {
    let dir = path.resolve(workspaceFolder);
    for (;;) {
      const where = dir === path.resolve(workspaceFolder) ? "the workspace's" : `${dir}'s`;
      for (const venv of [".venv", "venv"]) out.push({ file: path.join(dir, venv, "bin", "sf"), source: `${where} ${venv}` });
      const up = path.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  if (home) out.push({ file: path.join(home, ".local", "bin", "sf"), source: "~/.local/bin (pipx, uv tool)" });
  return out;
}

export function defaultIsExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function findOnPath(name: string, envPath: string | undefined, isExecutable = defaultIsExecutable): string | undefined {
  for (const dir of (envPath ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** Split a command line on whitespace, honouring single and double quotes. */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3]!));
  }
  return words;
}

/** The setting as argv, or undefined when unset/empty; throws on a malformed value. */
export function settingArgv(setting: unknown): string[] | undefined {
  if (setting === undefined || setting === null || setting === "") return undefined;
  if (Array.isArray(setting)) {
    if (!setting.length) return undefined;
    if (!setting.every((s) => typeof s === "string" && s.length > 0)) {
      throw new Error("stoneforge.serverCommand must be a string or an array of non-empty strings");
    }
    return setting as string[];
  }
  if (typeof setting === "string") return splitCommandLine(setting.trim());
  throw new Error("stoneforge.serverCommand must be a string or an array of strings");
}

export function resolveServerCommand(input: ResolveInput): ServerCommand | undefined {
  const isExec = input.isExecutable ?? defaultIsExecutable;
  const fromSetting = settingArgv(input.setting);
  if (fromSetting) {
    const [command, ...rest] = fromSetting as [string, ...string[]];
    return { command, args: [...rest, ...SERVER_ARGS], source: "the stoneforge.serverCommand setting" };
  }
  const sf = findOnPath("sf", input.envPath, isExec);
  if (sf) return { command: sf, args: [...SERVER_ARGS], source: "`sf` on PATH" };
  for (const { file, source } of sfCandidates(input.workspaceFolder, input.home)) {
    if (isExec(file)) return { command: file, args: [...SERVER_ARGS], source };
  }
  if (input.pythonInterpreter) {
    return {
      command: input.pythonInterpreter,
      args: ["-m", "stoneforge", ...SERVER_ARGS],
      source: INTERPRETER_SOURCE,
    };
  }
  return undefined;
}

/** How to install `sf`, said the same way wherever it is said. */
export const INSTALL_HINT =
  "Install it with `pipx install stoneforge-agents` (the distribution's name; or `pipx install .` in a Stoneforge checkout)";

/** What to tell the user when the server cannot start, with the fix. */
export function cannotStartMessage(cmd: ServerCommand | undefined, reason: string): string {
  if (!cmd) {
    return (
      "Stoneforge: no language server found: `sf` is not on PATH, nor in a .venv of the workspace or a folder above it, " +
      `nor in ~/.local/bin, and no Python interpreter with stoneforge is selected. ${INSTALL_HINT}, ` +
      "or set `stoneforge.serverCommand` to the path of `sf`."
    );
  }
  const line = [cmd.command, ...cmd.args].join(" ");
  if (/ENOENT/.test(reason)) {
    return (
      `Stoneforge: cannot start the language server: \`${cmd.command}\` (from ${cmd.source}) does not exist. ` +
      `${INSTALL_HINT}, or set \`stoneforge.serverCommand\` to the path of \`sf\`.`
    );
  }
  if (/EACCES/.test(reason)) {
    return `Stoneforge: cannot start the language server: \`${cmd.command}\` (from ${cmd.source}) is not executable. Point \`stoneforge.serverCommand\` at the \`sf\` of a Python environment with stoneforge installed.`;
  }
  return (
    `Stoneforge: the language server \`${line}\` (from ${cmd.source}) could not start: ${reason}. ` +
    `Check that stoneforge is installed there (${INSTALL_HINT.replace(/^Install it with/, "")}), ` +
    "or point `stoneforge.serverCommand` at a working `sf`."
  );
}
