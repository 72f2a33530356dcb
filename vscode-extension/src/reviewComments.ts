// The steward's review comments on the diff of a merge request, through VS Code's comments API:
// read-only threads on the modified side (scheme `stoneforge-diff`), kept in step with the server's
// merge requests on every `stoneforge/changed`.
import * as vscode from "vscode";
import type { StoneforgeApi } from "./api";
import { DIFF_SCHEME, parseDiffUri } from "./model/docUris";
import { reviewThreads } from "./model/reviewThreads";

export class ReviewComments implements vscode.Disposable {
  private readonly controller = vscode.comments.createCommentController("stoneforge.review", "Stoneforge review");
  private readonly threads = new Map<string, vscode.CommentThread[]>();
  private readonly subscriptions: vscode.Disposable[];

  constructor(private readonly api: StoneforgeApi) {
    this.subscriptions = [
      this.controller,
      vscode.workspace.onDidOpenTextDocument((doc) => void this.show(doc.uri)),
      vscode.workspace.onDidCloseTextDocument((doc) => this.clear(doc.uri.toString())),
    ];
  }

  /** Re-read the reviews for every open diff side (after `stoneforge/changed`). */
  async refreshOpen(): Promise<void> {
    const uris = vscode.workspace.textDocuments.map((d) => d.uri).filter((u) => u.scheme === DIFF_SCHEME);
    await Promise.all(uris.map((u) => this.show(u)));
  }

  private async show(uri: vscode.Uri): Promise<void> {
    if (uri.scheme !== DIFF_SCHEME) return;
    const target = parseDiffUri(uri.path, uri.query);
    if (!target || target.side !== "modified") return;
    let reviews;
    try {
      reviews = (await this.api.mergeRequests()).find((m) => m.id === target.mrId)?.reviews;
    } catch {
      return; // the server is restarting: the next change brings them
    }
    this.clear(uri.toString());
    const made = reviewThreads(reviews, target.path).map((t) => {
      const comment: vscode.Comment = {
        body: new vscode.MarkdownString(t.body),
        mode: vscode.CommentMode.Preview,
        author: { name: t.author },
        label: t.label,
      };
      const thread = this.controller.createCommentThread(uri, new vscode.Range(t.line, 0, t.line, 0), [comment]);
      thread.label = t.label;
      thread.canReply = false;
      thread.contextValue = "stoneforge-review";
      thread.collapsibleState = vscode.CommentThreadCollapsibleState.Expanded;
      return thread;
    });
    this.threads.set(uri.toString(), made);
  }

  private clear(key: string): void {
    for (const thread of this.threads.get(key) ?? []) thread.dispose();
    this.threads.delete(key);
  }

  dispose(): void {
    for (const key of [...this.threads.keys()]) this.clear(key);
    for (const s of this.subscriptions) s.dispose();
  }
}
