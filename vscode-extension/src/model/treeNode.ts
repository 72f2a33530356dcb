// What a tree row shows, as plain data: the views turn these into vscode.TreeItems one to one.

export interface Icon {
  /** A codicon id, e.g. "sync~spin". */
  id: string;
  /** A theme color id, e.g. "charts.green". */
  color?: string;
}

/** What a row stands for, so commands invoked on it know their target. */
export type NodeRef =
  | { kind: "plan"; id: string }
  | { kind: "task"; id: string; worktree: string | null }
  | { kind: "session"; id: string }
  | { kind: "handoff"; taskId: string; id: string }
  | { kind: "mr"; id: string }
  | { kind: "check"; mrId: string; index: number }
  | { kind: "review"; mrId: string; id: string }
  | { kind: "agent"; id: string }
  | { kind: "message" };

export interface NodeCommand {
  command: string;
  title: string;
  arguments: unknown[];
}

export interface TreeNode {
  /** Stable across refreshes so VS Code keeps expansion and selection. */
  id: string;
  label: string;
  description?: string;
  /** Markdown. */
  tooltip?: string;
  icon?: Icon;
  /** Space-separated flags matched by `viewItem =~ /\bflag\b/` in package.json menus. */
  contextValue: string;
  collapsible: "none" | "collapsed" | "expanded";
  command?: NodeCommand;
  ref: NodeRef;
  children: TreeNode[];
  /** Its children are fetched when it is expanded (a task's sessions and handoffs). */
  lazy?: boolean;
}

export function messageNode(id: string, label: string, icon: Icon, command?: NodeCommand): TreeNode {
  return {
    id: `message:${id}`,
    label,
    icon,
    contextValue: "message",
    collapsible: "none",
    ref: { kind: "message" },
    children: [],
    ...(command ? { command } : {}),
  };
}
