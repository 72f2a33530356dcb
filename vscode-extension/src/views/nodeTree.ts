// A TreeDataProvider over plain TreeNode data: each view supplies only a loader returning nodes.
import * as vscode from "vscode";
import { Coalescer } from "../coalescer";
import { messageNode, type TreeNode } from "../model/treeNode";
import { errorText } from "../server";

const COLLAPSIBLE = {
  none: vscode.TreeItemCollapsibleState.None,
  collapsed: vscode.TreeItemCollapsibleState.Collapsed,
  expanded: vscode.TreeItemCollapsibleState.Expanded,
} as const;

export function toTreeItem(node: TreeNode): vscode.TreeItem {
  const item = new vscode.TreeItem(node.label, COLLAPSIBLE[node.collapsible]);
  item.id = node.id;
  item.contextValue = node.contextValue;
  if (node.description !== undefined) item.description = node.description;
  if (node.tooltip !== undefined) item.tooltip = new vscode.MarkdownString(node.tooltip);
  if (node.icon) {
    item.iconPath = new vscode.ThemeIcon(node.icon.id, node.icon.color ? new vscode.ThemeColor(node.icon.color) : undefined);
  }
  if (node.command) item.command = node.command;
  return item;
}

/** Returned by a loader to leave a view as it is. */
export const KEEP = Symbol("keep");

export class NodeTreeProvider implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
  private roots: TreeNode[] = [];
  private parents = new Map<string, TreeNode>();
  private readonly emitter = new vscode.EventEmitter<void>();
  private readonly reload: Coalescer;
  readonly onDidChangeTreeData = this.emitter.event;

  /**
   * `load` returns the rows, or KEEP to leave the current ones (the server is restarting: keeping
   * them keeps the user's expanded rows too). An empty list shows the view's welcome text.
   */
  constructor(
    load: () => Promise<TreeNode[] | typeof KEEP>,
    /** Fetches the children of a `lazy` row when it is expanded. */
    private readonly expand?: (node: TreeNode) => Promise<TreeNode[]>,
  ) {
    this.reload = new Coalescer(async () => {
      try {
        const rows = await load();
        if (rows === KEEP) return;
        this.setRoots(rows);
      } catch (e) {
        this.setRoots([messageNode("error", `Could not load: ${errorText(e)}`, { id: "error", color: "errorForeground" })]);
      }
      this.emitter.fire();
    });
  }

  refresh(): Promise<void> {
    return this.reload.trigger();
  }

  /** Show rows computed without a reload (the Agents view's running times, once a second). */
  show(rows: TreeNode[]): void {
    this.setRoots(rows);
    this.emitter.fire();
  }

  private setRoots(rows: TreeNode[]): void {
    this.roots = rows;
    this.parents = new Map();
    const walk = (node: TreeNode) => {
      for (const child of node.children) {
        this.parents.set(child.id, node);
        walk(child);
      }
    };
    rows.forEach(walk);
  }

  /** The row with this id, anywhere in the tree (to reveal it). */
  find(id: string): TreeNode | undefined {
    const search = (nodes: readonly TreeNode[]): TreeNode | undefined => {
      for (const n of nodes) {
        const hit = n.id === id ? n : search(n.children);
        if (hit) return hit;
      }
      return undefined;
    };
    return search(this.roots);
  }

  getParent(node: TreeNode): TreeNode | undefined {
    return this.parents.get(node.id);
  }

  /** The loaded top-level rows (commands use them to offer choices). */
  get rootNodes(): readonly TreeNode[] {
    return this.roots;
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    return toTreeItem(node);
  }

  async getChildren(node?: TreeNode): Promise<TreeNode[]> {
    if (!node) return this.roots;
    if (!node.lazy || !this.expand) return node.children;
    try {
      node.children = await this.expand(node);
    } catch (e) {
      node.children = [messageNode(`error:${node.id}`, `Could not load: ${errorText(e)}`, { id: "error", color: "errorForeground" })];
    }
    node.lazy = false;
    for (const child of node.children) this.parents.set(child.id, node);
    return node.children;
  }

  dispose(): void {
    this.emitter.dispose();
  }
}
