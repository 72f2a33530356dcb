// Virtual documents: handoffs, check output and the forecast (scheme `stoneforge`), and the two
// sides of a merge request's diff (scheme `stoneforge-diff`). Content is fetched from the server
// when VS Code asks for it; open documents are re-read on every `stoneforge/changed`.
import * as vscode from "vscode";
import type { StoneforgeApi } from "./api";
import { checksMarkdown } from "./model/checksDoc";
import { DIFF_SCHEME, DOC_SCHEME, type DiffSide, type DocTarget, diffUriParts, docUriParts, parseDiffUri, parseDocQuery } from "./model/docUris";
import { forecastMarkdown } from "./model/forecastDoc";
import { findHandoff, handoffMarkdown } from "./model/handoffDoc";
import type { MergeDiff } from "./protocol";

export function docUri(target: DocTarget): vscode.Uri {
  return vscode.Uri.from({ scheme: DOC_SCHEME, ...docUriParts(target) });
}

/** Open a document rendered (Markdown preview), as a person reads it; its source stays a click away. */
export async function showDocument(target: DocTarget): Promise<void> {
  const uri = docUri(target);
  await vscode.workspace.openTextDocument(uri); // loads it, so a server error shows before the preview
  await vscode.commands.executeCommand("markdown.showPreview", uri);
}

export class DocumentProvider implements vscode.TextDocumentContentProvider {
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;

  constructor(private readonly api: StoneforgeApi) {}

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const target = parseDocQuery(uri.query);
    if (!target) return `Unknown Stoneforge document: ${uri.toString()}`;
    switch (target.kind) {
      case "handoff": {
        const task = await this.api.task(target.taskId); // its handoffs are among its details
        const handoff = findHandoff(task.handoffs, target.handoffKey);
        if (!handoff) return `# Handoff ${target.handoffKey}\n\nTask ${target.taskId} has no such handoff any more.\n`;
        return handoffMarkdown(handoff, task);
      }
      case "checks": {
        const mr = (await this.api.mergeRequests()).find((m) => m.id === target.mrId);
        return mr ? checksMarkdown(mr) : `# Checks\n\nNo merge request ${target.mrId}.\n`;
      }
      case "forecast": {
        const forecast = await this.api.forecast();
        // Titles of the few tasks with an active branch, not the whole board.
        const tasks = await Promise.all(forecast.branches.map((b) => this.api.task(b.label).catch(() => undefined)));
        return forecastMarkdown(forecast, new Map(tasks.flatMap((t) => (t ? [[t.id, t.title] as [string, string]] : []))));
      }
    }
  }

  /** Re-read the open documents of this scheme. */
  refreshOpen(): void {
    for (const doc of vscode.workspace.textDocuments) {
      if (doc.uri.scheme === DOC_SCHEME) this.emitter.fire(doc.uri);
    }
  }
}

export class DiffProvider implements vscode.TextDocumentContentProvider {
  /** One mergeDiff call per merge request serves both sides of every file. */
  private readonly cache = new Map<string, Promise<MergeDiff>>();
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;

  constructor(private readonly api: StoneforgeApi) {}

  diff(mrId: string): Promise<MergeDiff> {
    let pending = this.cache.get(mrId);
    if (!pending) {
      pending = this.api.mergeDiff(mrId);
      pending.catch(() => this.cache.delete(mrId));
      this.cache.set(mrId, pending);
    }
    return pending;
  }

  uri(mrId: string, side: DiffSide, path: string): vscode.Uri {
    return vscode.Uri.from({ scheme: DIFF_SCHEME, ...diffUriParts({ mrId, side, path }) });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const target = parseDiffUri(uri.path, uri.query);
    if (!target) return "";
    const file = (await this.diff(target.mrId)).files.find((f) => f.path === target.path);
    return (target.side === "original" ? file?.original : file?.modified) ?? "";
  }

  /** The branch may have moved: forget fetched diffs and re-read the open sides. */
  refreshOpen(): void {
    this.cache.clear();
    for (const doc of vscode.workspace.textDocuments) {
      if (doc.uri.scheme === DIFF_SCHEME) this.emitter.fire(doc.uri);
    }
  }
}
