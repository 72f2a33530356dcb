// Virtual documents: handoffs, check output and the forecast (scheme `stoneforge`), and the two
// sides of a merge request's (or a commit's) diff (scheme `stoneforge-diff`). Content is fetched
// from the server when asked for; open documents are re-read on every `stoneforge/changed`.
// Documents are shown rendered in a panel of our own (DocPanels), whose links run the commands
// of model/docLinks (the built-in Markdown preview runs no `command:` links).
import * as vscode from "vscode";
import type { StoneforgeApi } from "./api";
import { checksMarkdown } from "./model/checksDoc";
import { ENABLED_LINK_COMMANDS } from "./model/docLinks";
import {
  DIFF_SCHEME,
  DOC_SCHEME,
  type DiffSide,
  type DocTarget,
  commitOfDiffKey,
  diffUriParts,
  docTitle,
  docUriParts,
  parseDiffUri,
  parseDocQuery,
} from "./model/docUris";
import { forecastMarkdown } from "./model/forecastDoc";
import { findHandoff, handoffMarkdown } from "./model/handoffDoc";
import type { MergeDiff } from "./protocol";

export function docUri(target: DocTarget): vscode.Uri {
  return vscode.Uri.from({ scheme: DOC_SCHEME, ...docUriParts(target) });
}

const escapeHtml = (text: string): string => text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** Theme-following styles for the rendered Markdown (the webview gets VS Code's CSS variables). */
const STYLE = `
body { font-family: var(--vscode-markdown-font-family, var(--vscode-font-family)); font-size: var(--vscode-markdown-font-size, 14px);
  color: var(--vscode-foreground); line-height: 1.5; padding: 0 26px 26px; max-width: 980px; }
a { color: var(--vscode-textLink-foreground); text-decoration: none; }
a:hover { color: var(--vscode-textLink-activeForeground); text-decoration: underline; }
code { font-family: var(--vscode-editor-font-family); font-size: 0.9em; background: var(--vscode-textCodeBlock-background); padding: 1px 4px; border-radius: 3px; }
pre { background: var(--vscode-textCodeBlock-background); padding: 10px 12px; overflow-x: auto; border-radius: 3px; }
pre code { padding: 0; background: none; }
h1 { font-size: 1.6em; border-bottom: 1px solid var(--vscode-panel-border); padding-bottom: 0.3em; }
h2 { font-size: 1.25em; margin-top: 1.4em; }
blockquote { margin: 0; padding: 0 12px; border-left: 4px solid var(--vscode-textBlockQuote-border); background: var(--vscode-textBlockQuote-background); }
em { color: var(--vscode-descriptionForeground); }
`;

/**
 * Rendered documents, one panel each (opening one again shows it). The Markdown is rendered by
 * VS Code's own engine (`markdown.api.render`); the panel runs no script, and its links may run
 * only the document link commands.
 */
export class DocPanels implements vscode.Disposable {
  private readonly panels = new Map<string, { panel: vscode.WebviewPanel; target: DocTarget }>();
  /** The document of the panel in front (for Open Markdown Source). */
  private activeTarget: DocTarget | undefined;

  constructor(private readonly docs: DocumentProvider) {}

  /** The Markdown behind the panel in front, as a read-only text document beside it. */
  async openSource(): Promise<void> {
    const target = this.activeTarget;
    if (!target) return;
    const doc = await vscode.workspace.openTextDocument(docUri(target));
    await vscode.window.showTextDocument(await vscode.languages.setTextDocumentLanguage(doc, "markdown"), {
      preview: false,
      viewColumn: vscode.ViewColumn.Beside,
    });
  }

  async show(target: DocTarget): Promise<void> {
    const key = docUri(target).toString();
    // Fetched first, so a server error shows as an error message rather than an empty panel.
    const markdown = await this.docs.provideTextDocumentContent(docUri(target));
    let open = this.panels.get(key);
    if (open) {
      open.panel.reveal();
    } else {
      const panel = vscode.window.createWebviewPanel("stoneforge.document", docTitle(target), vscode.ViewColumn.Active, {
        enableCommandUris: ENABLED_LINK_COMMANDS,
        enableScripts: false,
        enableFindWidget: true,
        localResourceRoots: [],
      });
      open = { panel, target };
      this.panels.set(key, open);
      panel.onDidChangeViewState(({ webviewPanel }) => {
        if (webviewPanel.active) this.activeTarget = target;
      });
      panel.onDidDispose(() => {
        this.panels.delete(key);
        if (this.activeTarget === target) this.activeTarget = undefined;
      });
    }
    this.activeTarget = open.target;
    open.panel.webview.html = await this.html(open.panel.webview, markdown);
  }

  /** Re-render the open panels (the store changed). */
  async refreshOpen(): Promise<void> {
    for (const { panel, target } of [...this.panels.values()]) {
      try {
        panel.webview.html = await this.html(panel.webview, await this.docs.provideTextDocumentContent(docUri(target)));
      } catch {
        // the server is restarting: the next change re-renders it
      }
    }
  }

  private async html(webview: vscode.Webview, markdown: string): Promise<string> {
    let body: string;
    try {
      body = await vscode.commands.executeCommand<string>("markdown.api.render", markdown);
    } catch {
      body = `<pre>${escapeHtml(markdown)}</pre>`; // the built-in Markdown extension is disabled
    }
    const csp = `default-src 'none'; style-src 'unsafe-inline'; img-src ${webview.cspSource} https: data:;`;
    return `<!DOCTYPE html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${csp}"><style>${STYLE}</style></head><body>${body}</body></html>`;
  }

  dispose(): void {
    for (const { panel } of this.panels.values()) panel.dispose();
    this.panels.clear();
  }
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

  /** A merge request's diff, or a commit's for a key made by `commitDiffKey`. */
  diff(mrId: string): Promise<MergeDiff> {
    let pending = this.cache.get(mrId);
    if (!pending) {
      const commit = commitOfDiffKey(mrId);
      pending = commit ? this.api.commitDiff(commit) : this.api.mergeDiff(mrId);
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
