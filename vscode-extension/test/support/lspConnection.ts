// A bare LSP client over stdio (vscode-jsonrpc), enough to drive the real `sf lsp --stdio` the way
// the extension's LanguageClient does: initialize, custom requests, notifications, shutdown.
import { type ChildProcess, spawn } from "node:child_process";
import { pathToFileURL } from "node:url";
import {
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from "vscode-jsonrpc/node";
import { StoneforgeApi } from "../../src/api";
import { isolatedEnv } from "./workspace";

export interface Received {
  method: string;
  params: unknown;
}

export class LspSession {
  readonly api: StoneforgeApi;
  readonly received: Received[] = [];
  private waiters: Array<{ match: (r: Received) => boolean; resolve: (r: Received) => void }> = [];
  stderr = "";
  initializeResult: { capabilities: Record<string, unknown> } | undefined;

  private constructor(
    readonly proc: ChildProcess,
    readonly conn: MessageConnection,
  ) {
    this.api = new StoneforgeApi({ sendRequest: <R>(m: string, p: unknown) => conn.sendRequest<R>(m, p) });
  }

  static async start(sf: string, root: string): Promise<LspSession> {
    const proc = spawn(sf, ["lsp", "--stdio"], { cwd: root, env: isolatedEnv(), stdio: ["pipe", "pipe", "pipe"] });
    const conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    const session = new LspSession(proc, conn);
    proc.stderr!.on("data", (d: Buffer) => (session.stderr += d.toString()));
    // What VS Code's client answers when the server asks.
    conn.onRequest("window/workDoneProgress/create", () => null);
    conn.onRequest("client/registerCapability", () => null);
    conn.onRequest("workspace/configuration", (p: { items: unknown[] }) => p.items.map(() => null));
    conn.onRequest("window/showMessageRequest", () => null);
    conn.onNotification((method: string, params: unknown) => session.record({ method, params }));
    conn.listen();
    const uri = pathToFileURL(root).toString();
    session.initializeResult = await conn.sendRequest("initialize", {
      processId: process.pid,
      rootUri: uri,
      workspaceFolders: [{ uri, name: "ws" }],
      capabilities: { window: { workDoneProgress: true }, textDocument: { publishDiagnostics: {} } },
    });
    await conn.sendNotification("initialized", {});
    return session;
  }

  private record(r: Received): void {
    this.received.push(r);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(r)) return true;
      w.resolve(r);
      return false;
    });
  }

  /** Register before triggering: resolves with the first notification (from now on) that matches. */
  waitFor(method: string, match: (params: any) => boolean = () => true, timeoutMs = 10_000): Promise<Received> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms; stderr:\n${this.stderr}`)), timeoutMs);
      this.waiters.push({
        match: (r) => r.method === method && match(r.params),
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  }

  /** Polite shutdown, then the process is ended by its pid whatever happened. */
  async close(): Promise<void> {
    try {
      await Promise.race([
        (async () => {
          await this.conn.sendRequest("shutdown");
          await this.conn.sendNotification("exit");
        })(),
        new Promise((r) => setTimeout(r, 3000)),
      ]);
    } catch {
      // already gone
    }
    this.conn.dispose();
    await stopProcess(this.proc);
  }
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process has exited. */
export async function stopProcess(proc: ChildProcess, graceMs = 3000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  try {
    process.kill(proc.pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      if (proc.pid !== undefined) process.kill(proc.pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}
