// Paths of the virtual documents the extension opens (scheme `stoneforge` for readable documents,
// `stoneforge-diff` for the two sides of a merge request's diff). Pure string work so both the
// builders and the parser are tested without VS Code.

export const DOC_SCHEME = "stoneforge";
export const DIFF_SCHEME = "stoneforge-diff";

export type DocTarget =
  | { kind: "handoff"; taskId: string; handoffKey: string }
  | { kind: "checks"; mrId: string }
  | { kind: "forecast" };

export type DiffSide = "original" | "modified";

export interface DiffTarget {
  /** A merge request's id, or `commit:<sha>` for one commit's diff (see {@link commitDiffKey}). */
  mrId: string;
  side: DiffSide;
  path: string;
}

const seg = encodeURIComponent;

/**
 * A document's URI as path + query: the path is what its tab shows ("Handoff h1 of t1.md"), the
 * query says what to load, so names can read well without being parsed back.
 */
export function docUriParts(target: DocTarget): { path: string; query: string } {
  switch (target.kind) {
    case "handoff":
      return { path: `/Handoff ${target.handoffKey} of ${target.taskId}.md`, query: `kind=handoff&task=${seg(target.taskId)}&key=${seg(target.handoffKey)}` };
    case "checks":
      return { path: `/Checks of ${target.mrId}.md`, query: `kind=checks&mr=${seg(target.mrId)}` };
    case "forecast":
      return { path: "/Conflict forecast.md", query: "kind=forecast" };
  }
}

/** A document's tab title: its path without the slash and the `.md` ("Handoff h2 of t1"). */
export function docTitle(target: DocTarget): string {
  return docUriParts(target).path.replace(/^\//, "").replace(/\.md$/, "");
}

export function parseDocQuery(query: string): DocTarget | undefined {
  const q = new URLSearchParams(query);
  const kind = q.get("kind");
  const task = q.get("task");
  const key = q.get("key");
  const mr = q.get("mr");
  if (kind === "handoff" && task && key) return { kind, taskId: task, handoffKey: key };
  if (kind === "checks" && mr) return { kind, mrId: mr };
  if (kind === "forecast") return { kind };
  return undefined;
}

/**
 * A diff side's URI as path + query: the path is the file's own (`/src/calc.py`), the same on both
 * sides, so the editor picks the language from it and the multi-file diff editor does not take
 * the two sides for a rename (it compares their paths); which merge request and side go in the query.
 */
export function diffUriParts(target: DiffTarget): { path: string; query: string } {
  return { path: `/${target.path}`, query: `mr=${seg(target.mrId)}&side=${target.side}` };
}

export function parseDiffUri(path: string, query: string): DiffTarget | undefined {
  const params = new URLSearchParams(query);
  const mrId = params.get("mr");
  const side = params.get("side");
  if (!mrId || (side !== "original" && side !== "modified") || !path.startsWith("/") || path.length < 2) return undefined;
  return { mrId, side, path: path.slice(1) };
}

/** The diff key of one commit: the DiffProvider fetches `commitDiff` for it instead of `mergeDiff`. */
export function commitDiffKey(sha: string): string {
  return `commit:${sha}`;
}

/** The commit of a diff key made by {@link commitDiffKey}; undefined for a merge request's. */
export function commitOfDiffKey(key: string): string | undefined {
  return key.startsWith("commit:") ? key.slice("commit:".length) : undefined;
}
