// Links in the rendered documents (handoffs, checks, the forecast): task ids, merge request ids,
// file paths and commits become `command:` links that open the task, the merge request, the file
// in the task's checkout, the commit's diff. The document panel enables exactly these commands.

export const LINK_COMMANDS = {
  task: "stoneforge.ui.revealTask",
  mr: "stoneforge.ui.revealMergeRequest",
  file: "stoneforge.ui.openFile",
  commit: "stoneforge.ui.showCommit",
} as const;

/** The only commands a document's links may run (the webview's `enableCommandUris`). */
export const ENABLED_LINK_COMMANDS: readonly string[] = Object.values(LINK_COMMANDS);

/** `command:<id>?<arguments as a JSON array>`, as VS Code runs it from a link. */
export function commandUri(command: string, args: unknown[]): string {
  // Parentheses too: a Markdown link's destination ends at an unbalanced ")".
  const query = encodeURIComponent(JSON.stringify(args)).replace(/[()']/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `command:${command}?${query}`;
}

/** The command and arguments of a `command:` URI (what a click runs); undefined for anything else. */
export function parseCommandUri(uri: string): { command: string; args: unknown[] } | undefined {
  const m = /^command:([^?]+)(?:\?(.*))?$/.exec(uri);
  if (!m) return undefined;
  const args = m[2] ? (JSON.parse(decodeURIComponent(m[2])) as unknown) : [];
  return { command: m[1]!, args: Array.isArray(args) ? args : [args] };
}

/** Markdown link text: brackets and backslashes escaped. */
function text(label: string): string {
  return label.replace(/[\\[\]]/g, (c) => `\\${c}`);
}

/** A link's title, in double quotes: none inside. */
const title = (t: string): string => `"${t.replace(/"/g, "'")}"`;

const code = (label: string): string => "`" + label.replace(/`/g, "'") + "`";

export function taskLink(taskId: string, label = taskId): string {
  return `[${text(label)}](${commandUri(LINK_COMMANDS.task, [taskId])} ${title(`Show task ${taskId}`)})`;
}

export function mrLink(mrId: string, label = mrId): string {
  return `[${text(label)}](${commandUri(LINK_COMMANDS.mr, [mrId])} ${title(`Show merge request ${mrId}`)})`;
}

/** A file of the repository, opened in `taskId`'s checkout while it exists (else the workspace's), at `line`. */
export function fileLink(path: string, opts: { taskId?: string | null; line?: number | null; label?: string } = {}): string {
  const args = [path, opts.taskId ?? null, opts.line ?? null];
  const where = opts.taskId ? ` in ${opts.taskId}'s checkout` : "";
  return `[${code(opts.label ?? path)}](${commandUri(LINK_COMMANDS.file, args)} ${title(`Open ${path}${where}`)})`;
}

export function commitLink(sha: string, label = sha.slice(0, 8)): string {
  return `[${code(label)}](${commandUri(LINK_COMMANDS.commit, [sha])} ${title(`Show the diff of commit ${sha.slice(0, 12)}`)})`;
}

/**
 * Free text with the ids it mentions linked: task ids (t12) and merge request ids (mr3) as
 * whole words. Text in backticks is left alone (it is code, not a reference).
 */
export function linkIds(prose: string, known: { tasks?: ReadonlySet<string>; mrs?: ReadonlySet<string> } = {}): string {
  return prose
    .split(/(`[^`]*`)/)
    .map((part, i) =>
      i % 2 === 1
        ? part
        : part.replace(/(?<![\w/.[-])(t\d+|mr\d+)(?![\w/-]|\]\()/g, (id) => {
            if (id.startsWith("mr")) return !known.mrs || known.mrs.has(id) ? mrLink(id) : id;
            return !known.tasks || known.tasks.has(id) ? taskLink(id) : id;
          }),
    )
    .join("");
}

/** "tests/test_calc.py::test_bad" -> the file part, "tests/test_calc.py"; a plain path stays. */
export function testFile(test: string): string {
  return test.split("::", 1)[0]!.trim();
}
