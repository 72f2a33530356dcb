// code-server for the e2e test: where it is installed, installing the .vsix, starting it on a
// free loopback port with its own user-data and extensions dirs, and stopping it.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { extensionRoot } from "../fixtures";
import { stopTree } from "./processes";

/**
 * Where code-server is installed: $STONEFORGE_CODE_SERVER_DIR (scripts/extension-test sets it), else
 * whatever scripts/install-code-server.sh prints, which installs it first unless it is cached.
 */
export function codeServerDir(): string {
  const dir =
    process.env.STONEFORGE_CODE_SERVER_DIR ??
    execFileSync(path.join(extensionRoot(), "scripts", "install-code-server.sh"), { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  if (!fs.existsSync(path.join(dir, ".complete"))) throw new Error(`code-server is not installed in ${dir}`);
  return dir;
}

export const entry = (dir: string): string => path.join(dir, "node_modules", "code-server", "out", "node", "entry.js");

/** XDG base directories inside `dir`, so a program started with them writes nothing under $HOME. */
export function xdgDirs(dir: string): Record<string, string> {
  return {
    XDG_CONFIG_HOME: path.join(dir, "xdg-config"),
    XDG_CACHE_HOME: path.join(dir, "xdg-cache"),
    XDG_DATA_HOME: path.join(dir, "xdg-data"),
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface CodeServerOptions {
  installDir: string;
  vsix: string;
  workspace: string;
  stateDir: string;
  settings: Record<string, unknown>;
  env: NodeJS.ProcessEnv;
  logFile: string;
}

export class CodeServer {
  private constructor(
    readonly proc: ChildProcess,
    readonly url: string,
  ) {}

  static async start(o: CodeServerOptions): Promise<CodeServer> {
    const userData = path.join(o.stateDir, "user-data");
    const extensions = path.join(o.stateDir, "extensions");
    fs.mkdirSync(path.join(userData, "User"), { recursive: true });
    fs.writeFileSync(path.join(userData, "User", "settings.json"), JSON.stringify(o.settings, null, 2));
    // An explicit --config on every call: without it code-server writes ~/.config/code-server.
    const port = await freePort();
    const config = path.join(o.stateDir, "config.yaml");
    fs.writeFileSync(config, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
    const common = ["--config", config, "--user-data-dir", userData, "--extensions-dir", extensions];
    // code-server also keeps logs, a heartbeat and a device id under the XDG dirs: keep those in stateDir too.
    const env = { ...o.env, ...xdgDirs(o.stateDir) };
    execFileSync(process.execPath, [entry(o.installDir), ...common, "--install-extension", o.vsix], { env, stdio: "pipe" });

    const log = fs.openSync(o.logFile, "w");
    const proc = spawn(
      process.execPath,
      [entry(o.installDir), ...common, "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override", o.workspace],
      { env, stdio: ["ignore", log, log] },
    );
    fs.closeSync(log);
    const server = new CodeServer(proc, `http://127.0.0.1:${port}`);
    await server.waitHealthy(60_000);
    return server;
  }

  private async waitHealthy(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`code-server exited with ${this.proc.exitCode}`);
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`code-server did not answer on ${this.url} within ${timeoutMs} ms`);
  }

  /** Stops code-server and everything under it (extension host, `sf lsp`) by pid. */
  stop(): Promise<number[]> {
    return stopTree(this.proc);
  }
}
