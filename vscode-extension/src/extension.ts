// Entry point: start the server for the workspace folder, then wire views, documents, commands and
// the status bar to it. Everything refreshes on `stoneforge/changed` (and when the server comes
// back after a restart), never on a timer.
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { DiffProvider, DocPanels, DocumentProvider } from "./docs";
import { DIFF_SCHEME, DOC_SCHEME } from "./model/docUris";
import { onInterpreterChanged } from "./python";
import { ReviewComments } from "./reviewComments";
import { StoneforgeServer } from "./server";
import { StatusBar } from "./statusBar";
import { Toasts } from "./toasts";
import { Views } from "./views/views";

let server: StoneforgeServer | undefined;

/** The folder with `.stoneforge/`, else the first one. */
function chooseFolder(): vscode.WorkspaceFolder | undefined {
  const folders = vscode.workspace.workspaceFolders ?? [];
  return folders.find((f) => fs.existsSync(path.join(f.uri.fsPath, ".stoneforge"))) ?? folders[0];
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("Stoneforge");
  context.subscriptions.push(output);
  const folder = chooseFolder();
  if (!folder) {
    void vscode.commands.executeCommand("setContext", "stoneforge.serverState", "failed");
    output.appendLine("[stoneforge] no workspace folder is open; open a git repository to use Stoneforge");
    return;
  }

  server = new StoneforgeServer(folder, output);
  const views = new Views(server, context.workspaceState);
  const docs = new DocumentProvider(server.api);
  const diffs = new DiffProvider(server.api);
  const panels = new DocPanels(docs);
  const reviewComments = new ReviewComments(server.api);
  const statusBar = new StatusBar();
  const toasts = new Toasts(server, views);

  const refreshStatus = async () => {
    if (server?.state !== "running") return;
    if (!server.initialized) {
      statusBar.showUninitialized();
      return;
    }
    try {
      const status = await server.api.status();
      statusBar.update(status);
      void vscode.commands.executeCommand("setContext", "stoneforge.serving", status.serving);
      void vscode.commands.executeCommand("setContext", "stoneforge.awaitingApproval", (status.mergeRequestsByStatus.awaiting_approval ?? 0) > 0);
      views.showNeedsYou(status);
    } catch (e) {
      output.appendLine(`[stoneforge] status: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  const refreshEverything = () => {
    void views.refreshAll();
    void refreshStatus();
    docs.refreshOpen();
    void panels.refreshOpen();
    diffs.refreshOpen();
    void reviewComments.refreshOpen();
  };

  context.subscriptions.push(
    views,
    statusBar,
    reviewComments,
    vscode.workspace.registerTextDocumentContentProvider(DOC_SCHEME, docs),
    vscode.workspace.registerTextDocumentContentProvider(DIFF_SCHEME, diffs),
    panels,
    ...registerCommands(server, views, diffs, panels),
    server.onChanged((params) => {
      views.applyChanged(params);
      refreshEverything();
    }),
    toasts,
    server.onMessage((m) => toasts.show(m)),
    server.onState((state) => {
      views.board.invalidate(); // notifications may have been missed meanwhile: read it whole
      statusBar.showState(state);
      refreshEverything();
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration("stoneforge.serverCommand")) void server?.restart();
    }),
  );
  const interpreterWatch = await onInterpreterChanged(() => {
    if (server?.usesInterpreter) void server.restart();
  });
  if (interpreterWatch) context.subscriptions.push(interpreterWatch);

  // Not awaited: activation finishes at once; the views fill in when the server is up.
  void server.start();
}

export async function deactivate(): Promise<void> {
  await server?.dispose();
  server = undefined;
}
