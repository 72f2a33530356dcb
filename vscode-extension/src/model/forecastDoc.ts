// stoneforge/forecast -> a document listing the task pairs predicted to conflict.
import type { Forecast } from "../protocol";

export function forecastMarkdown(f: Forecast, titles: ReadonlyMap<string, string>): string {
  const name = (id: string) => (titles.has(id) ? `${id} (${titles.get(id)})` : id);
  const out = [`# Conflict forecast against \`${f.target}\``, ""];
  if (!f.pairs.length) {
    out.push("No conflicts predicted among the active task branches.", "");
    return out.join("\n");
  }
  out.push(`${f.pairs.length === 1 ? "One pair" : `${f.pairs.length} pairs`} of changes would conflict when merged:`, "");
  for (const p of f.pairs) {
    out.push(`## ${name(p.left)} ↔ ${name(p.right)}`, "");
    for (const file of p.files) {
      const lines = file.lines.map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ");
      out.push(`- \`${file.path}\`${lines ? `, lines ${lines}` : ""}`);
    }
    out.push("");
  }
  return out.join("\n");
}
