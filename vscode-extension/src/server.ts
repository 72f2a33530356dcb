// Owns the language client: resolves the server command, starts `sf lsp --stdio` in the workspace
// folder, restarts it when it crashes, and exposes the typed API and the `changed` notification.
import * as os from "node:os";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";
import { StoneforgeApi } from "./api";
import { CHANGED_NOTIFICATION, type ChangedParams, Methods, type WorkspaceState } from "./protocol";
import { RestartPolicy } from "./restartPolicy";
import { INTERPRETER_SOURCE, cannotStartMessage, resolveServerCommand, type ServerCommand } from "./serverCommand";
import { selectedInterpreter } from "./python";

export type ServerState = "starting" | "running" | "failed";

/** window/showMessage params: type 1 error, 2 warning, 3 info, 4 log. */
export interface ServerMessage {
  type: number;
  message: string;
}

export class StoneforgeServer implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private command: ServerCommand | undefined;
  private reachedRunning = false;
  private readonly policy = new RestartPolicy();
  private readonly changedEmitter = new vscode.EventEmitter<ChangedParams>();
  private readonly stateEmitter = new vscode.EventEmitter<ServerState>();
  private current: ServerState = "starting";
  private initializedFolder = true;

  private readonly messageEmitter = new vscode.EventEmitter<ServerMessage>();
  /** The server's pop-ups (window/showMessage), for the extension to show its own way. */
  readonly onMessage = this.messageEmitter.event;

  /** Fires on every `stoneforge/changed` notification. */
  readonly onChanged = this.changedEmitter.event;
  /** Fires when the server becomes usable, or stops being so. */
  readonly onState = this.stateEmitter.event;

  readonly api = new StoneforgeApi({
    sendRequest: <R>(method: string, params: unknown): Promise<R> => {
      if (!this.client || this.current !== "running") {
        return Promise.reject(new Error("the Stoneforge server is not running (see Stoneforge: Show Server Log)"));
      }
      return this.client.sendRequest<R>(method, params);
    },
  });

  constructor(
    private readonly folder: vscode.WorkspaceFolder,
    readonly output: vscode.OutputChannel,
  ) {}

  /** The workspace folder the server runs in. */
  get folderUri(): vscode.Uri {
    return this.folder.uri;
  }

  /** Whether the command in use came from the Python extension (so an interpreter change matters). */
  get usesInterpreter(): boolean {
    return this.command?.source === INTERPRETER_SOURCE;
  }

  get state(): ServerState {
    return this.current;
  }

  /** False while the folder does not use Stoneforge yet (the server wrote nothing; offer init). */
  get initialized(): boolean {
    return this.initializedFolder;
  }

  /** After `stoneforge/init`: the views can load, so tell everyone as if the server came up. */
  markInitialized(): void {
    this.setInitialized(true);
    this.stateEmitter.fire(this.current);
  }

  private setInitialized(value: boolean): void {
    this.initializedFolder = value;
    void vscode.commands.executeCommand("setContext", "stoneforge.workspace", value ? "ready" : "uninitialized");
  }

  /** Ask whether the folder uses Stoneforge yet, then say the server is running. */
  private async cameUp(client: LanguageClient): Promise<void> {
    try {
      const ws = await client.sendRequest<WorkspaceState>(Methods.workspace, {});
      this.setInitialized(ws.initialized);
      if (!ws.initialized) this.output.appendLine(`[stoneforge] ${ws.problem ?? "this folder does not use Stoneforge yet"}`);
    } catch (e) {
      // An older server without stoneforge/workspace set the folder up itself.
      this.output.appendLine(`[stoneforge] stoneforge/workspace: ${errorText(e)}`);
      this.setInitialized(true);
    }
    if (this.client === client) this.setState("running");
  }

  private setState(state: ServerState): void {
    if (state === this.current) return;
    this.current = state;
    void vscode.commands.executeCommand("setContext", "stoneforge.serverState", state);
    this.stateEmitter.fire(state);
  }

  async start(): Promise<void> {
    this.setState("starting");
    try {
      this.command = resolveServerCommand({
        setting: vscode.workspace.getConfiguration("stoneforge", this.folder.uri).get("serverCommand"),
        envPath: process.env.PATH,
        pythonInterpreter: await selectedInterpreter(this.folder.uri),
        workspaceFolder: this.folder.uri.fsPath,
        home: os.homedir(),
      });
    } catch (e) {
      return this.fail(undefined, errorText(e));
    }
    if (!this.command) return this.fail(undefined, "not found");

    const { command, args, source } = this.command;
    this.output.appendLine(`[stoneforge] starting ${[command, ...args].join(" ")} (from ${source}) in ${this.folder.uri.fsPath}`);
    const serverOptions: ServerOptions = { command, args, options: { cwd: this.folder.uri.fsPath } };
    const clientOptions: LanguageClientOptions = {
      // Conflict markers can be in any file, so diagnostics are wanted for every file on disk.
      documentSelector: [{ scheme: "file" }],
      workspaceFolder: this.folder,
      outputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      diagnosticCollectionName: "stoneforge",
      initializationFailedHandler: () => false,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => this.onClosed(),
      },
    };
    this.reachedRunning = false;
    const client = new LanguageClient("stoneforge", "Stoneforge", serverOptions, clientOptions);
    // No work-done progress: the orchestrator's would be an endless spinner in the status bar,
    // repeating what the Stoneforge item and the views already show.
    client.registerFeature({
      fillClientCapabilities: (caps) => {
        if (caps.window) caps.window.workDoneProgress = false;
      },
      initialize: () => {},
      getState: () => ({ kind: "static" }),
      clear: () => {},
    });
    this.client = client;
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) {
        this.reachedRunning = true;
        void this.cameUp(client);
      } else if (e.newState === State.Starting) {
        this.setState("starting");
      }
    });
    client.onNotification(CHANGED_NOTIFICATION, (params: ChangedParams) => this.changedEmitter.fire(params));
    // Replaces the client's default toast per message (registered before start, so it wins).
    client.onNotification("window/showMessage", (params: ServerMessage) => this.messageEmitter.fire(params));
    try {
      await client.start();
    } catch (e) {
      if (this.client === client) this.fail(this.command, errorText(e));
    }
  }

  /** Called by the language client when the connection closes. */
  private onClosed(): { action: CloseAction; handled: boolean } {
    if (!this.reachedRunning) {
      // Never came up: start() reports why; restarting would fail the same way.
      return { action: CloseAction.DoNotRestart, handled: true };
    }
    if (this.policy.shouldRestart(Date.now())) {
      this.output.appendLine("[stoneforge] the server exited; restarting it");
      this.setState("starting");
      return { action: CloseAction.Restart, handled: true };
    }
    this.fail(this.command, "it exited 5 times within 3 minutes");
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  /** Mark the server failed and tell the user why and how to fix it (without waiting for them). */
  private fail(cmd: ServerCommand | undefined, reason: string): void {
    const message = cannotStartMessage(cmd, reason);
    this.setState("failed");
    this.output.appendLine(`[stoneforge] ${message}`);
    void vscode.window.showErrorMessage(message, "Open Settings", "Show Log", "Retry").then(async (choice) => {
      if (choice === "Open Settings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", "stoneforge.serverCommand");
      } else if (choice === "Show Log") {
        this.output.show();
      } else if (choice === "Retry") {
        await this.restart();
      }
    });
  }

  async restart(): Promise<void> {
    this.policy.reset();
    await this.stopClient();
    await this.start();
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client?.needsStop()) {
      try {
        await client.stop(5000);
      } catch (e) {
        this.output.appendLine(`[stoneforge] stopping the server: ${errorText(e)}`);
      }
    }
  }

  async dispose(): Promise<void> {
    await this.stopClient();
    this.changedEmitter.dispose();
    this.messageEmitter.dispose();
    this.stateEmitter.dispose();
  }
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "object" && e !== null && "message" in e) return String((e as { message: unknown }).message);
  return String(e);
}
