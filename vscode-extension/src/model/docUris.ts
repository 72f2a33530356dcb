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

/** `/mr1/original/src/calc.py`: the file path stays last so the editor picks its language from it. */
export function diffPath(target: DiffTarget): string {
  return `/${seg(target.mrId)}/${target.side}/${target.path.split("/").map(seg).join("/")}`;
}

export function parseDiffPath(path: string): DiffTarget | undefined {
  const m = /^\/([^/]+)\/(original|modified)\/(.+)$/.exec(path);
  if (!m) return undefined;
  return {
    mrId: decodeURIComponent(m[1]!),
    side: m[2] as DiffSide,
    path: m[3]!.split("/").map(decodeURIComponent).join("/"),
  };
}
