// A merge request's checks as a document: each command, its result and the tail of its output.
import type { MergeRequest } from "../protocol";
import { duration, humanize, shortSha } from "./format";
import { checksSummary } from "./mergeQueueModel";

export function checksMarkdown(mr: MergeRequest): string {
  const out = [
    `# Checks of ${mr.id} (${mr.branch})`,
    "",
    `_${humanize(mr.status)} · ${checksSummary(mr.checks)}${mr.candidateCommit ? ` · on commit \`${shortSha(mr.candidateCommit)}\`` : ""}_`,
    "",
  ];
  if (mr.reason) out.push(`> ${mr.reason}`, "");
  if (!mr.checks.length) out.push("No checks have run yet.", "");
  for (const c of mr.checks) {
    const result = c.exitCode === null ? "did not finish" : c.exitCode === 0 ? "passed" : `failed (exit ${c.exitCode})`;
    out.push(`## \`${c.command}\` — ${result}${c.flaky ? ", flaky" : ""}, ${duration(c.durationS)}`, "");
    out.push("```text", c.outputTail.trimEnd() || "(no output)", "```", "");
  }
  return out.join("\n");
}
