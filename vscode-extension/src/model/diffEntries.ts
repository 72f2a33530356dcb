// A merge request's changed files -> entries of the multi-file diff editor. VS Code's
// `vscode.changes` takes [resource, original, modified] per file and shows an entry with no
// original as added and one with no modified as deleted; giving both sides always would show an
// added file as a modified one with an empty original.
import type { DiffFile } from "../protocol";
import type { DiffSide } from "./docUris";

export interface DiffEntry {
  path: string;
  /** The sides that exist: an added file has no original, a deleted one no modified. */
  sides: DiffSide[];
}

export function diffEntries(files: DiffFile[]): DiffEntry[] {
  return files.map((f) => ({
    path: f.path,
    sides: [
      ...(f.original !== null && f.status !== "A" ? (["original"] as const) : []),
      ...(f.modified !== null && f.status !== "D" ? (["modified"] as const) : []),
    ],
  }));
}
