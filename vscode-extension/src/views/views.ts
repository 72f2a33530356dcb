// The three views of the Stoneforge container and what each loads from the server.
import * as vscode from "vscode";
import { agentsTree } from "../model/agentsModel";
import { mergeQueueTree } from "../model/mergeQueueModel";
import { tasksTree } from "../model/tasksModel";
import type { StoneforgeServer } from "../server";
import { NodeTreeProvider } from "./nodeTree";

export class Views implements vscode.Disposable {
  readonly tasks: NodeTreeProvider;
  readonly mergeQueue: NodeTreeProvider;
  readonly agents: NodeTreeProvider;
  /** Last threshold seen in taskTree; the Agents view shows context use against it. */
  private handoffAt = 140_000;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(server: StoneforgeServer) {
    const api = server.api;
    const up = () => server.state === "running";
    this.tasks = new NodeTreeProvider(async () => {
      if (!up()) return undefined;
      const tree = await api.taskTree();
      this.handoffAt = tree.handoffAtTokens;
      return tasksTree(tree);
    });
    this.mergeQueue = new NodeTreeProvider(async () => {
      if (!up()) return undefined;
      const [mrs, tasks] = await Promise.all([api.mergeRequests(), api.listTasks()]);
      return mergeQueueTree(mrs, tasks);
    });
    this.agents = new NodeTreeProvider(async () => {
      if (!up()) return undefined;
      const status = await api.status();
      return agentsTree(status, status.handoffAtTokens ?? this.handoffAt, new Date());
    });
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
    await this.tasks.refresh(); // first: it updates the threshold the Agents view uses
    await Promise.all([this.mergeQueue.refresh(), this.agents.refresh()]);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
