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
  mrId: string;
  side: DiffSide;
  path: string;
}

const seg = encodeURIComponent;

export function docPath(target: DocTarget): string {
  switch (target.kind) {
    case "handoff":
      return `/handoff/${seg(target.taskId)}/${seg(target.handoffKey)}.md`;
    case "checks":
      return `/checks/${seg(target.mrId)}.md`;
    case "forecast":
      return "/forecast.md";
  }
}

export function parseDocPath(path: string): DocTarget | undefined {
  const parts = path.replace(/^\//, "").replace(/\.md$/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "handoff" && parts.length === 3) {
    return { kind: "handoff", taskId: parts[1]!, handoffKey: parts[2]! };
  }
  if (parts[0] === "checks" && parts.length === 2) return { kind: "checks", mrId: parts[1]! };
  if (parts[0] === "forecast" && parts.length === 1) return { kind: "forecast" };
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
