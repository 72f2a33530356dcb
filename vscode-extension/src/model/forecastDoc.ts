// stoneforge/forecast -> a document listing the branch pairs predicted to conflict, with where.
import type { Forecast, ForecastPair, LineRange } from "../protocol";
import { plural } from "./format";

function lines(r: LineRange): string {
  return r.count <= 1 ? `line ${r.start}` : `lines ${r.start}–${r.start + r.count - 1}`;
}

function side(label: string, titles: ReadonlyMap<string, string>): string {
  return titles.has(label) ? `${label} (${titles.get(label)})` : `\`${label}\``;
}

function pairSection(p: ForecastPair, titles: ReadonlyMap<string, string>): string[] {
  const out = [`## ${side(p.ours, titles)} ↔ ${side(p.theirs, titles)}`, ""];
  for (const f of p.files) {
    const what = f.binary ? "binary" : f.kinds.join(", ");
    out.push(`- \`${f.path}\`${what ? ` (${what})` : ""}`);
    for (const h of f.hunks) out.push(`  - ${p.ours} ${lines(h.ours)}, ${p.theirs} ${lines(h.theirs)}`);
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
    for (const [what, why] of errors) out.push(`- ${what}: ${why}`);
    out.push("");
  }
  return out.join("\n");
}
