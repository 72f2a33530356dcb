// Test workspaces: a temp git repository seeded by tests/e2e/seed_workspace.py (real branch, real
// candidate merge commit, store rows for what only Claude Code would produce).
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { extensionRoot } from "../fixtures";

export interface Seeded {
  root: string;
  planId: string;
  taskId: string;
  blockedTaskId: string;
  sessionIds: string;
  handoffId: string;
  mrId: string;
  branch: string;
  conflictFile: string;
  worktree: string;
  rivalTaskId: string;
  /** The body of the seeded review's comment (calc.py, line 7 of the branch's version). */
  reviewComment: string;
}

export const repoRoot = (): string => path.dirname(extensionRoot());

/** The `sf` under test: $STONEFORGE_SF, else the repository's .venv. */
export function sfPath(): string {
  const sf = process.env.STONEFORGE_SF ?? path.join(repoRoot(), ".venv", "bin", "sf");
  if (!fs.existsSync(sf)) throw new Error(`no sf at ${sf}: run scripts/setup, or set STONEFORGE_SF`);
  return sf;
}

/** The interpreter next to `sf` (the venv's), which can import stoneforge. */
export function venvPython(): string {
  return path.join(path.dirname(sfPath()), "python");
}

/** Environment for anything that may start an agent: no real model endpoint is ever reached. */
export function isolatedEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ANTHROPIC_BASE_URL: "http://127.0.0.1:9",
    ANTHROPIC_API_KEY: "test-key-not-real",
    CLAUDE_CODE_MAX_RETRIES: "0",
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
    DISABLE_AUTOUPDATER: "1",
    DISABLE_TELEMETRY: "1",
  };
}

const made: string[] = [];

export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Remove the temp dirs this process made (callers keep them after a failure, to look into). */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** With `forecastConflict`, a third task in review has a branch conflicting with the first's. */
export function seedWorkspace(dir: string, opts: { forecastConflict?: boolean } = {}): Seeded {
  const script = path.join(repoRoot(), "tests", "e2e", "seed_workspace.py");
  const args = [script, dir, ...(opts.forecastConflict ? ["--forecast-conflict"] : [])];
  const out = execFileSync(venvPython(), args, { encoding: "utf8", env: isolatedEnv() });
  return JSON.parse(out) as Seeded;
}

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8" }).trim();
}
