// stoneforge/mergeRequests -> rows of the Merge Queue view, the ones needing a person first.
import type { CheckingCandidate, CheckRun, LandingPause, MergeRequest, MergeStatus, Review, Task } from "../protocol";
import { duration, humanize, oneLine, plural, shortCommand, shortSha, when } from "./format";
import { checkIcon, mergeIcon, reviewIcon } from "./icons";
import { hiddenRow } from "./tasksModel";
import type { TreeNode } from "./treeNode";

const RANK: Record<MergeStatus, number> = {
  awaiting_approval: 0,
  conflict: 1,
  test_failed: 2,
  testing: 3,
  reviewing: 4,
  pending: 5,
  merged: 6,
  rejected: 7,
};

const REJECTABLE: ReadonlySet<MergeStatus> = new Set(["awaiting_approval", "conflict", "test_failed"]);

/** Merge requests that are done with: hidden by default, like merged and cancelled tasks. */
const FINISHED_MR: ReadonlySet<MergeStatus> = new Set(["merged", "rejected"]);

export function mergeQueueTree(
  all: MergeRequest[],
  tasks: Pick<Task, "id" | "title">[],
  paused: LandingPause | null = null,
  hideFinished = false,
  checking: CheckingCandidate[] = [],
): TreeNode[] {
  const titles = new Map(tasks.map((t) => [t.id, t.title]));
  const checkedOn = new Map(checking.flatMap((c) => c.mergeRequests.map((id) => [id, onText(c)] as const)));
  const mrs = hideFinished ? all.filter((m) => !FINISHED_MR.has(m.status)) : all;
  const hidden = all.length - mrs.length;
  const rows = mrs
    .map((mr, i) => ({ mr, i }))
    .sort((a, b) => (RANK[a.mr.status] ?? 9) - (RANK[b.mr.status] ?? 9) || a.i - b.i)
    .map(({ mr }) => mrNode(mr, titles.get(mr.taskId), checkedOn.get(mr.id)));
  if (hidden) rows.push(hiddenRow(hidden, hidden === 1 ? "merged or rejected request" : "merged or rejected requests"));
  const top = [...(paused ? [pausedNode(paused)] : []), ...(checking.length ? [checkingNode(checking)] : [])];
  return [...top, ...rows];
}

/** "on the target" or, for a candidate checked ahead, "ahead, on mr1, mr2". */
function onText(c: CheckingCandidate): string {
  if (c.onTarget) return "on the target";
  if (c.onMergeRequests.length) return `ahead, on ${c.onMergeRequests.join(", ")}`;
  return c.base ? `on ${shortSha(c.base)}` : "on an unknown base";
}

/** The row on top while checks run: each candidate checked now (several with look-ahead), in
 * the order they would land, with the base it is built on. */
export function checkingNode(checking: CheckingCandidate[]): TreeNode {
  const children = checking.map((c): TreeNode => {
    const names = c.mergeRequests;
    const tooltip = [
      `**${names.join(", ")}**: candidate \`${shortSha(c.candidate)}\` ${onText(c)}`,
      "",
      c.onTarget
        ? "Built on the target's tip: it lands as checked if its checks pass."
        : "Checked ahead, as if the candidate below it lands: if that one lands, this result stands without another run; if not, it is rebuilt on the real tip.",
      ...(c.base ? ["", `- base: \`${shortSha(c.base)}\``] : []),
    ];
    return {
      id: `checking:${c.candidate}`,
      label: names.join(", "),
      description: onText(c),
      tooltip: tooltip.join("\n"),
      icon: c.onTarget ? { id: "sync~spin" } : { id: "debug-step-over", color: "charts.blue" },
      contextValue: "checking",
      collapsible: "none",
      ref: { kind: "message" },
      children: [],
    };
  });
  return {
    id: "checking",
    label: checking.length > 1 ? `Checking ${checking.length} candidates at once` : "Checking",
    description: checking.map((c) => c.mergeRequests.join(", ")).join(" · "),
    tooltip: "The merge queue's candidates whose checks run now, in the order they would land.",
    icon: { id: "sync~spin" },
    contextValue: "checking",
    collapsible: "expanded",
    ref: { kind: "message" },
    children,
  };
}

/** The row on top while landing waits for the user's checkout: what is in the way, and where. */
export function pausedNode(p: LandingPause): TreeNode {
  const tooltip = [
    `**Landing paused** since ${when(p.since)}`,
    "",
    p.reason,
    "",
    ...p.files.slice(0, 20).map((f) => `- \`${f}\``),
    ...(p.files.length > 20 ? [`- … and ${p.files.length - 20} more`] : []),
    "",
    "Commit, stash or move them: landing resumes by itself, and no checks run meanwhile.",
  ];
  return {
    id: "landing-paused",
    label: "Landing paused",
    description: p.reason,
    tooltip: tooltip.join("\n"),
    icon: { id: "debug-pause", color: "list.warningForeground" },
    contextValue: "landing-paused",
    collapsible: "none",
    ref: { kind: "message" },
    children: [],
  };
}

export function checksSummary(checks: CheckRun[]): string {
  if (!checks.length) return "no checks run";
  const failed = checks.filter((c) => c.exitCode !== 0).length;
  if (failed === 0) return `${checks.length}/${plural(checks.length, "check")} passed`;
  return `${failed} of ${plural(checks.length, "check")} failed`;
}

export function mrFlags(mr: MrRowFields): string {
  const flags = ["mr", `mr-${mr.status}`];
  if (mr.status === "awaiting_approval") flags.push("can-approve");
  if (REJECTABLE.has(mr.status)) flags.push("can-reject");
  if (mr.checks?.length) flags.push("has-checks");
  return flags.join(" ");
}

/**
 * What a task's merge-request row needs: the MR's id and state, and, where the task row carries
 * them, its checks and reviews (the verdict shown is the latest review's).
 */
export type MrRowFields = Pick<MergeRequest, "id" | "status"> & Partial<Pick<MergeRequest, "checks" | "reviews" | "reason" | "branch">>;

/**
 * A task's merge request as a child row of the task in the Tasks view: state, check result and
 * review verdict, with the Merge Queue's actions (the same `mr` flags, so the same menus).
 */
export function taskMrNode(taskId: string, mr: MrRowFields): TreeNode {
  const reviews = mr.reviews ?? [];
  const latest = reviews[reviews.length - 1];
  const checks = mr.checks === undefined ? undefined : checksSummary(mr.checks);
  const verdict = latest ? `review ${reviewVerdictText(latest)}` : undefined;
  const tooltip = [`**Merge request ${mr.id}** of ${taskId}: ${humanize(mr.status)}`, ""];
  if (mr.branch) tooltip.push(`- branch: \`${mr.branch}\``);
  if (checks) tooltip.push(`- checks: ${checks}`);
  if (latest) tooltip.push(`- review ${latest.round}: ${reviewVerdictText(latest)}: ${oneLine(latest.summary, 120)}`);
  if (mr.reason) tooltip.push("", `_${mr.reason}_`);
  tooltip.push("", "Right-click for its actions (Show Diff, Show Checks, Approve, Reject).");
  return {
    id: `task-mr:${taskId}:${mr.id}`,
    label: `merge request ${mr.id}`,
    description: [humanize(mr.status), checks, verdict].filter(Boolean).join(" · "),
    tooltip: tooltip.join("\n"),
    icon: mergeIcon(mr.status),
    contextValue: mrFlags(mr),
    collapsible: "none",
    ref: { kind: "mr", id: mr.id },
    children: [],
  };
}

export function mrNode(mr: MergeRequest, taskTitle: string | undefined, checkedOn?: string): TreeNode {
  const tooltip = [`**${mr.id}** for ${mr.taskId}${taskTitle ? ` (${taskTitle})` : ""}: ${humanize(mr.status)}`, ""];
  tooltip.push(`- branch: \`${mr.branch}\``);
  if (mr.candidateCommit) tooltip.push(`- checked commit: \`${shortSha(mr.candidateCommit)}\``);
  if (mr.mergedCommit) tooltip.push(`- merged as: \`${shortSha(mr.mergedCommit)}\` (${when(mr.mergedAt)})`);
  tooltip.push(`- checks: ${checksSummary(mr.checks)}`);
  const reviews = mr.reviews ?? [];
  if (reviews.length) tooltip.push(`- reviews: ${reviews.map(reviewVerdictText).join(", ")}`);
  if (mr.reason) tooltip.push("", `_${mr.reason}_`);
  if (mr.summary) tooltip.push("", mr.summary);
  const children = [...reviews.map((r) => reviewNode(mr.id, r)), ...mr.checks.map((c, i) => checkNode(mr.id, c, i))];
  return {
    id: `mr:${mr.id}`,
    label: taskTitle ?? mr.branch,
    description: [mr.id, humanize(mr.status), checkedOn, checksSummary(mr.checks), mr.reason ? oneLine(mr.reason, 40) : undefined]
      .filter(Boolean)
      .join(" · "),
    tooltip: tooltip.join("\n"),
    icon: mergeIcon(mr.status),
    contextValue: mrFlags(mr),
    collapsible: children.length ? "collapsed" : "none",
    ref: { kind: "mr", id: mr.id },
    children,
  };
}

export function reviewVerdictText(r: Pick<Review, "verdict">): string {
  return r.verdict === "approve" ? "approved" : "changes requested";
}

/** A child row of its merge request: the verdict, and the comments in the tooltip. */
export function reviewNode(mrId: string, r: Review): TreeNode {
  const comments = r.comments.map((c) => `- \`${c.path}${c.line ? `:${c.line}` : ""}\`: ${c.body}`);
  const tooltip = [`**Review ${r.round}** (${reviewVerdictText(r)}) of ${mrId}`, "", r.summary];
  if (comments.length) tooltip.push("", ...comments);
  return {
    id: `review:${mrId}:${r.id}`,
    label: `Review ${r.round}: ${reviewVerdictText(r)}`,
    description: [plural(r.comments.length, "comment"), oneLine(r.summary, 60)].join(" · "),
    tooltip: tooltip.join("\n"),
    icon: reviewIcon(r.verdict),
    contextValue: r.comments.length ? "review has-comments" : "review",
    collapsible: "none",
    command: { command: "stoneforge.ui.showReview", title: "Show Review", arguments: [mrId, r.id] },
    ref: { kind: "review", mrId, id: r.id },
    children: [],
  };
}

function checkNode(mrId: string, c: CheckRun, index: number): TreeNode {
  const result = c.exitCode === null ? "did not finish" : c.exitCode === 0 ? "passed" : `exit ${c.exitCode}`;
  return {
    id: `check:${mrId}:${index}`,
    label: shortCommand(c.command),
    description: [result, duration(c.durationS), c.flaky ? "flaky" : undefined].filter(Boolean).join(" · "),
    tooltip: "```\n" + (c.outputTail || "(no output)") + "\n```",
    icon: checkIcon(c.exitCode, c.flaky),
    contextValue: "check",
    collapsible: "none",
    command: { command: "stoneforge.ui.showChecks", title: "Show Checks", arguments: [mrId] },
    ref: { kind: "check", mrId, index },
    children: [],
  };
}
