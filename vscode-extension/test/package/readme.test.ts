// The build-and-install steps exactly as the README writes them, run on a fresh `git clone` of
// this repository's HEAD (no out/, dist/ or node_modules/ left over from other steps). `code` is a
// shim that installs into a throwaway code-server, so the last step really installs the .vsix.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, test } from "node:test";
import { codeServerDir, entry, xdgDirs } from "../support/codeServer";
import { removeTempDirs, repoRoot, tempDir } from "../support/workspace";

/** The fenced bash block that follows `heading` in a markdown file. */
export function bashBlockAfter(markdown: string, heading: string): string {
  const at = markdown.indexOf(heading);
  assert.ok(at >= 0, `no "${heading}" heading`);
  const m = /```bash\n([\s\S]*?)```/.exec(markdown.slice(at));
  assert.ok(m, `no bash block after "${heading}"`);
  return m[1]!;
}

let ok = false;
after(() => {
  if (ok) removeTempDirs();
});

test("the README's build and install steps work on a fresh clone", { timeout: 10 * 60_000 }, (t) => {
  const state = tempDir("sf-readme-");
  const clone = path.join(state, "clone");
  const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repoRoot(), encoding: "utf8" }).trim();
  execFileSync("git", ["clone", "--quiet", "--no-checkout", repoRoot(), clone]);
  execFileSync("git", ["-c", "advice.detachedHead=false", "checkout", "--quiet", head], { cwd: clone });

  // `code --install-extension X`: the same flag of code-server, into its own dirs.
  const bin = path.join(state, "bin");
  const extensions = path.join(state, "extensions");
  fs.mkdirSync(bin);
  fs.writeFileSync(
    path.join(bin, "code"),
    `#!/bin/sh\nexec "${process.execPath}" "${entry(codeServerDir())}" --user-data-dir "${state}/user-data" --extensions-dir "${extensions}" "$@"\n`,
    { mode: 0o755 },
  );
  const env = { ...process.env, ...xdgDirs(state), PATH: `${bin}${path.delimiter}${process.env.PATH}` };
  const run = (cwd: string, script: string) => {
    t.diagnostic(`in ${path.relative(state, cwd)}:\n${script.trim()}`);
    execFileSync("bash", ["-euo", "pipefail", "-c", script], { cwd, env, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20 });
  };
  const installed = () =>
    fs.existsSync(extensions) ? fs.readdirSync(extensions).filter((d) => d.startsWith("stoneforge.stoneforge-")) : [];

  // The top-level README: run from the clone's root.
  run(clone, bashBlockAfter(fs.readFileSync(path.join(clone, "README.md"), "utf8"), "### 3. In VS Code"));
  const vsix = path.join(clone, "vscode-extension", "out", "stoneforge.vsix");
  assert.ok(fs.statSync(vsix).size > 10_000, "the .vsix was built");
  const [dir] = installed();
  assert.ok(dir, `code --install-extension installed it: ${fs.readdirSync(extensions).join(", ")}`);
  assert.ok(fs.existsSync(path.join(extensions, dir, "dist", "extension.js")), "the bundle is in the installed extension");

  // vscode-extension/README.md gives the same steps from inside vscode-extension/ (not run twice:
  // npm ci and the package step take minutes on a busy machine).
  const commands = (block: string) =>
    block
      .split("\n")
      .flatMap((line) => line.replace(/#.*$/, "").split("&&"))
      .map((c) => c.trim())
      .filter((c) => c && !c.startsWith("cd "));
  const ext = path.join(clone, "vscode-extension");
  assert.deepEqual(
    commands(bashBlockAfter(fs.readFileSync(path.join(ext, "README.md"), "utf8"), "## Build and install")),
    commands(bashBlockAfter(fs.readFileSync(path.join(clone, "README.md"), "utf8"), "### 3. In VS Code")),
  );
  ok = true;
});
