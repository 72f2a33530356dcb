// A merge request's checks as a document: each command, its result and the tail of its output.
import type { MergeRequest } from "../protocol";
import { commitLink, linkIds, mrLink, taskLink } from "./docLinks";
import { duration, humanize } from "./format";
import { checksSummary } from "./mergeQueueModel";

export function checksMarkdown(mr: MergeRequest): string {
  const out = [
    `# Checks of ${mrLink(mr.id)} (${mr.branch})`,
    "",
    `_${[
      `${taskLink(mr.taskId, `task ${mr.taskId}`)}`,
      humanize(mr.status),
      checksSummary(mr.checks),
      mr.candidateCommit ? `on commit ${commitLink(mr.candidateCommit)}` : undefined,
      mr.mergedCommit ? `merged as ${commitLink(mr.mergedCommit)}` : undefined,
    ]
      .filter(Boolean)
      .join(" · ")}_`,
    "",
  ];
  if (mr.reason) out.push(`> ${linkIds(mr.reason)}`, "");
  if (!mr.checks.length) out.push("No checks have run yet.", "");
  for (const c of mr.checks) {
    const result = c.exitCode === null ? "did not finish" : c.exitCode === 0 ? "passed" : `failed (exit ${c.exitCode})`;
    out.push(`## \`${c.command}\` — ${result}${c.flaky ? ", flaky" : ""}, ${duration(c.durationS)}`, "");
    out.push("```text", c.outputTail.trimEnd() || "(no output)", "```", "");
  }
  return out.join("\n");
}
