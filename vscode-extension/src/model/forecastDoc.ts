// stoneforge/forecast -> a document listing the branch pairs predicted to conflict, with where.
import type { Forecast, ForecastPair, LineRange } from "../protocol";
import { fileLink, taskLink } from "./docLinks";
import { plural } from "./format";

function lines(r: LineRange): string {
  return r.count <= 1 ? `line ${r.start}` : `lines ${r.start}–${r.start + r.count - 1}`;
}

function side(label: string, titles: ReadonlyMap<string, string>): string {
  return titles.has(label) ? `${taskLink(label)} (${titles.get(label)})` : `\`${label}\``;
}

/** A side's lines, linked to the file in that task's checkout (or, for the target, the workspace). */
function sideLines(label: string, path: string, r: LineRange, titles: ReadonlyMap<string, string>): string {
  const taskId = titles.has(label) ? label : null;
  return `${label} ${fileLink(path, { taskId, line: r.start, label: lines(r) })}`;
}

function pairSection(p: ForecastPair, titles: ReadonlyMap<string, string>): string[] {
  const out = [`## ${side(p.ours, titles)} ↔ ${side(p.theirs, titles)}`, ""];
  for (const f of p.files) {
    const what = f.binary ? "binary" : f.kinds.join(", ");
    const first = f.hunks[0]?.ours.start ?? null;
    out.push(`- ${fileLink(f.path, { taskId: titles.has(p.ours) ? p.ours : null, line: first })}${what ? ` (${what})` : ""}`);
    for (const h of f.hunks) out.push(`  - ${sideLines(p.ours, f.path, h.ours, titles)}, ${sideLines(p.theirs, f.path, h.theirs, titles)}`);
  }
  out.push("");
  return out;
}

export function forecastMarkdown(f: Forecast, titles: ReadonlyMap<string, string>): string {
  const conflicts = f.pairs.filter((p) => p.conflict);
  const out = [`# Conflict forecast against \`${f.target}\``, ""];
  out.push(`_${plural(f.branches.length, "active branch", "active branches")}, ${plural(f.pairs.length, "pair")} checked with \`git merge-tree\`_`, "");
  if (!conflicts.length) {
    out.push("No conflicts predicted among the active task branches.", "");
  } else {
    out.push(`${conflicts.length === 1 ? "One pair" : `${conflicts.length} pairs`} would conflict when merged:`, "");
    for (const p of conflicts) out.push(...pairSection(p, titles));
  }
  const errors = [...Object.entries(f.errors), ...f.pairs.filter((p) => p.error).map((p) => [`${p.ours} ↔ ${p.theirs}`, p.error!])];
  if (errors.length) {
    out.push("## Could not forecast", "");
    for (const [what, why] of errors) out.push(`- ${titles.has(what) ? taskLink(what) : what}: ${why}`);
    out.push("");
  }
  return out.join("\n");
}
