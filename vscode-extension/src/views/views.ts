// The three views of the Stoneforge container and what each loads from the server.
import * as fs from "node:fs";
import * as vscode from "vscode";
import { agentsTree, hasRunningTime } from "../model/agentsModel";
import { mergeQueueTree } from "../model/mergeQueueModel";
import { needsYou } from "../model/statusBarModel";
import { asTask, Board } from "../model/board";
import { taskChildRows, tasksTree } from "../model/tasksModel";
import type { TreeNode } from "../model/treeNode";
import type { ChangedParams, Status } from "../protocol";
import type { StoneforgeServer } from "../server";
import { KEEP, NodeTreeProvider } from "./nodeTree";

export class Views implements vscode.Disposable {
  readonly tasks: NodeTreeProvider;
  readonly mergeQueue: NodeTreeProvider;
  readonly agents: NodeTreeProvider;
  /** Last threshold seen in taskTree, for a server whose status lacks it. */
  private handoffAt = 140_000;
  private readonly disposables: vscode.Disposable[] = [];
  /** The Agents view's last status, re-rendered every second while an agent runs. */
  private agentsStatus: Status | undefined;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private readonly tasksView: vscode.TreeView<TreeNode>;
  private readonly mergeQueueView: vscode.TreeView<TreeNode>;

  /** The lean board both task-showing views render from, kept current by stoneforge/changed. */
  readonly board = new Board();
  private boardLoading: Promise<void> | undefined;
  private interrupted: ReadonlySet<string> = new Set();

  /** Whether merged/cancelled tasks and merged/rejected requests are shown (default: hidden). */
  private finishedShown: boolean;

  constructor(
    private readonly server: StoneforgeServer,
    private readonly memento?: vscode.Memento,
  ) {
    this.finishedShown = memento?.get<boolean>("stoneforge.showFinished") ?? false;
    void vscode.commands.executeCommand("setContext", "stoneforge.showFinished", this.finishedShown);
    const api = server.api;
    // While the server restarts the views keep their rows (and so the user's expanded rows);
    // once it has failed they empty, which shows the welcome text with the log and restart links
    // (and in a folder that does not use Stoneforge yet, the one that offers to set it up).
    const whenUp =
      (load: () => Promise<TreeNode[]>) =>
      async (): Promise<TreeNode[] | typeof KEEP> =>
        server.state === "starting" ? KEEP : server.state === "failed" || !server.initialized ? [] : load();

    this.tasks = new NodeTreeProvider(
      whenUp(async () => {
        const [, status] = await Promise.all([this.currentBoard(), api.status()]);
        this.handoffAt = this.board.handoffAtTokens;
        this.interrupted = new Set((status.interruptedSessions ?? []).map((a) => a.sessionId));
        return tasksTree(this.board.taskTree(), {
          hideFinished: !this.finishedShown,
          worktreeExists: (p) => fs.existsSync(p),
          interrupted: this.interrupted,
        });
      }),
      // A task's sessions and handoffs: fetched when its row is expanded.
      async (node) => {
        if (node.ref.kind !== "task") return node.children;
        const details = await api.task(node.ref.id);
        this.board.setDetails(details);
        return taskChildRows(asTask(details.row ?? details, details), this.handoffAt, this.interrupted);
      },
    );
    this.mergeQueue = new NodeTreeProvider(
      whenUp(async () => {
        const [mrs, , status] = await Promise.all([api.mergeRequests(), this.currentBoard(), api.status()]);
        return mergeQueueTree(
          mrs,
          this.board.allTasks(),
          status.landingPaused ?? null,
          !this.finishedShown,
          status.checking ?? [],
        );
      }),
    );
    this.agents = new NodeTreeProvider(
      whenUp(async () => {
        const status = await api.status();
        this.agentsStatus = status;
        this.tickWhile(hasRunningTime(status));
        return this.agentRows(status);
      }),
    );
    this.tasksView = vscode.window.createTreeView("stoneforge.tasks", { treeDataProvider: this.tasks, showCollapseAll: true });
    this.mergeQueueView = vscode.window.createTreeView("stoneforge.mergeQueue", { treeDataProvider: this.mergeQueue });
    this.disposables.push(
      this.tasks,
      this.mergeQueue,
      this.agents,
      this.tasksView,
      this.mergeQueueView,
      vscode.window.createTreeView("stoneforge.agents", { treeDataProvider: this.agents }),
    );
  }

  /** The board, read whole first when it has none (or lost track: a gap). One read at a time. */
  async currentBoard(): Promise<Board> {
    if (this.board.version === null) {
      this.boardLoading ??= this.server.api
        .taskTree()
        .then((tree) => this.board.load(tree))
        .finally(() => (this.boardLoading = undefined));
      await this.boardLoading;
    }
    return this.board;
  }

  /** Put a task's current row on the board now (one just created: its delta may not be here yet). */
  async noteTask(taskId: string): Promise<void> {
    const board = await this.currentBoard();
    board.setDetails(await this.server.api.task(taskId));
  }

  /** A stoneforge/changed: apply its delta; after a gap the next render reads the whole tree. */
  applyChanged(params: ChangedParams): void {
    if (this.board.apply(params) === "gap") this.board.invalidate();
  }

  /** Select a task's row (showing finished rows first if it is one of them). */
  async revealTask(taskId: string): Promise<void> {
    await vscode.commands.executeCommand("workbench.view.extension.stoneforge");
    let node = this.tasks.find(`task:${taskId}`);
    if (!node && !this.finishedShown) {
      await this.setShowFinished(true);
      node = this.tasks.find(`task:${taskId}`);
    }
    if (node) await this.tasksView.reveal(node, { select: true, focus: true, expand: true });
  }

  /** Select a merge request's row in the Merge Queue (showing finished rows first if it is one). */
  async revealMergeRequest(mrId: string): Promise<void> {
    await vscode.commands.executeCommand("workbench.view.extension.stoneforge");
    let node = this.mergeQueue.find(`mr:${mrId}`);
    if (!node && !this.finishedShown) {
      await this.setShowFinished(true);
      node = this.mergeQueue.find(`mr:${mrId}`);
    }
    if (node) await this.mergeQueueView.reveal(node, { select: true, focus: true, expand: true });
  }

  /** The badge on the Stoneforge views: how many things wait for the user. */
  showNeedsYou(status: Status): void {
    const { count, summary } = needsYou(status);
    this.tasksView.badge = count ? { value: count, tooltip: `Needs you: ${summary}` } : undefined;
  }

  get showFinished(): boolean {
    return this.finishedShown;
  }

  async setShowFinished(show: boolean): Promise<void> {
    this.finishedShown = show;
    await this.memento?.update("stoneforge.showFinished", show);
    await vscode.commands.executeCommand("setContext", "stoneforge.showFinished", show);
    await Promise.all([this.tasks.refresh(), this.mergeQueue.refresh()]);
  }

  private agentRows(status: Status): TreeNode[] {
    return agentsTree(status, status.handoffAtTokens ?? this.handoffAt, new Date());
  }

  /** A one-second timer that redraws the running times, only while some session runs. */
  private tickWhile(running: boolean): void {
    if (running && !this.ticker) {
      this.ticker = setInterval(() => {
        if (this.server.state !== "running" || !this.agentsStatus) return this.tickWhile(false);
        this.agents.show(this.agentRows(this.agentsStatus));
      }, 1000);
    } else if (!running && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  async refreshAll(): Promise<void> {
    await Promise.all([this.tasks.refresh(), this.mergeQueue.refresh(), this.agents.refresh()]);
  }

  dispose(): void {
    this.tickWhile(false);
    for (const d of this.disposables) d.dispose();
  }
}
