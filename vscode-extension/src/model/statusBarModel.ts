// stoneforge/status -> the status-bar item's text and tooltip.
import type { Status } from "../protocol";
import { plural } from "./format";

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** True when something waits for the user (a merge request to approve, a paused landing). */
  attention: boolean;
  /** How many things wait for the user (the views' badge), and what they are. */
  needsYou: { count: number; summary: string };
}

/** What waits for a person: merge requests to approve, failed tasks, a paused landing. */
export function needsYou(s: Status): { count: number; summary: string } {
  const approvals = s.mergeRequestsByStatus.awaiting_approval ?? 0;
  const failed = s.tasksByStatus.failed ?? 0;
  const parts = [
    approvals ? `${plural(approvals, "merge request")} to approve` : "",
    failed ? `${plural(failed, "failed task")} to retry or cancel` : "",
    s.landingPaused ? "landing paused by your checkout" : "",
  ].filter(Boolean);
  return { count: approvals + failed + (s.landingPaused ? 1 : 0), summary: parts.join(", ") };
}

export function statusBarView(s: Status): StatusBarView {
  const workers = s.agents.filter((a) => a.role === "worker").length;
  const queued = s.ready;
  const mrs = s.mergeRequestsByStatus;
  const inQueue = (mrs.pending ?? 0) + (mrs.testing ?? 0) + (mrs.awaiting_approval ?? 0);
  const toApprove = mrs.awaiting_approval ?? 0;

  const agents = s.serving ? `${workers}/${s.maxConcurrent}` : "stopped";
  const wants = needsYou(s);
  // Named, so it is not a bare robot among other extensions' items.
  const parts = [`$(hubot) Stoneforge ${agents}`, `$(list-ordered) ${queued}`];
  if (inQueue) parts.push(`$(git-merge) ${inQueue}`);
  const paused = s.landingPaused;
  if (paused) parts.push(`$(debug-pause) landing paused: ${paused.files.length ? someFiles(paused.files, 2) : "checkout"}`);
  const outage = s.providerUnavailable;
  if (outage) parts.push(`$(cloud-offline) provider unavailable, ${outage.nextTryAt ? `next try ${utcTime(outage.nextTryAt)}` : "probing now"}`);
  if (wants.count) parts.push(`$(bell-dot) ${wants.count}`);

  const tip = [
    ...(wants.count ? [`Needs you: ${wants.summary}.`, ""] : []),
    ...(outage ? [outage.line, "Tasks wait in the queue; their attempts are not spent.", ""] : []),
    ...(paused ? [`landing paused: ${paused.reason}`, "Commit, stash or move them: landing resumes by itself.", ""] : []),
    s.serving
      ? `${workers} of ${s.maxConcurrent} agents busy`
      : s.orchestrator
        ? `orchestrator runs elsewhere (pid ${s.orchestrator.pid})`
        : "orchestration stopped",
    `${plural(queued, "task")} ready in the queue${s.blocked ? `, ${s.blocked} blocked` : ""}`,
    `${plural(inQueue, "merge request")} in the merge queue${toApprove ? `, ${toApprove} awaiting your approval` : ""}`,
    "",
    "Click to show the Stoneforge views.",
  ];
  return { text: parts.join("  "), tooltip: tip.join("\n"), attention: wants.count > 0 || !!outage, needsYou: wants };
}

/** "00:41:10": the UTC time of an ISO timestamp, as `sf status` prints it. */
export function utcTime(iso: string): string {
  return new Date(iso).toISOString().slice(11, 19);
}

/** "a.py, b.py +3": the first `shown` files and how many more, short enough for the status bar. */
export function someFiles(files: string[], shown: number): string {
  const more = files.length - shown;
  return files.slice(0, shown).join(", ") + (more > 0 ? ` +${more}` : "");
}
