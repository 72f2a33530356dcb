// The three views of the Stoneforge container and what each loads from the server.
import * as vscode from "vscode";
import { agentsTree } from "../model/agentsModel";
import { mergeQueueTree } from "../model/mergeQueueModel";
import { tasksTree } from "../model/tasksModel";
import type { TreeNode } from "../model/treeNode";
import type { StoneforgeServer } from "../server";
import { KEEP, NodeTreeProvider } from "./nodeTree";

export class Views implements vscode.Disposable {
  readonly tasks: NodeTreeProvider;
  readonly mergeQueue: NodeTreeProvider;
  readonly agents: NodeTreeProvider;
  /** Last threshold seen in taskTree, for a server whose status lacks it. */
  private handoffAt = 140_000;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(server: StoneforgeServer) {
    const api = server.api;
    // While the server restarts the views keep their rows (and so the user's expanded rows);
    // once it has failed they empty, which shows the welcome text with the log and restart links.
    const whenUp =
      (load: () => Promise<TreeNode[]>) =>
      async (): Promise<TreeNode[] | typeof KEEP> =>
        server.state === "starting" ? KEEP : server.state === "failed" ? [] : load();

    this.tasks = new NodeTreeProvider(
      whenUp(async () => {
        const tree = await api.taskTree();
        this.handoffAt = tree.handoffAtTokens;
        return tasksTree(tree);
      }),
    );
    this.mergeQueue = new NodeTreeProvider(
      whenUp(async () => {
        const [mrs, tasks, status] = await Promise.all([api.mergeRequests(), api.listTasks(), api.status()]);
        return mergeQueueTree(mrs, tasks, status.landingPaused ?? null);
      }),
    );
    this.agents = new NodeTreeProvider(
      whenUp(async () => {
        const status = await api.status();
        return agentsTree(status, status.handoffAtTokens ?? this.handoffAt, new Date());
      }),
    );
    this.disposables.push(
      this.tasks,
      this.mergeQueue,
      this.agents,
      vscode.window.createTreeView("stoneforge.tasks", { treeDataProvider: this.tasks, showCollapseAll: true }),
      vscode.window.createTreeView("stoneforge.mergeQueue", { treeDataProvider: this.mergeQueue }),
      vscode.window.createTreeView("stoneforge.agents", { treeDataProvider: this.agents }),
    );
  }

  async refreshAll(): Promise<void> {
    await Promise.all([this.tasks.refresh(), this.mergeQueue.refresh(), this.agents.refresh()]);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
