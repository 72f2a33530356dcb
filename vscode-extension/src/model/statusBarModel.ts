// stoneforge/status -> the status-bar item's text and tooltip.
import type { Status } from "../protocol";
import { oneLine, plural } from "./format";

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** True when something waits for the user (a merge request to approve, a paused landing). */
  attention: boolean;
  /** How many things wait for the user (the views' badge), and what they are. */
  needsYou: NeedsYou;
}

/** What waits for a person, counted, each kind in a phrase and a line that says what to do. */
export interface NeedsYou {
  count: number;
  /** One line for a badge's tooltip: "1 merge request to approve, 2 failed tasks to retry or cancel". */
  summary: string;
  /** One line per kind, saying what it is and what to do about it (the status bar's tooltip). */
  lines: string[];
}

/**
 * What waits for a person: merge requests to approve, failed tasks, tasks stopped at their
 * budget, questions the director could not answer (the worker went on with an assumption), a
 * paused landing.
 */
export function needsYou(s: Status): NeedsYou {
  const approvals = s.mergeRequestsByStatus.awaiting_approval ?? 0;
  const failed = s.tasksByStatus.failed ?? 0;
  const budget = s.tasksByStatus.budget_exceeded ?? 0;
  const questions = s.openQuestions ?? [];
  const kinds: Array<[number, string, string]> = [
    [approvals, `${plural(approvals, "merge request")} to approve`, "checked and waiting for your approval (or a decision the review left to you): Approve or Reject in the Merge Queue"],
    [failed, `${plural(failed, "failed task")} to retry or cancel`, "out of attempts: read the note in the Tasks view, then Retry or Cancel"],
    [budget, `${plural(budget, "task")} stopped at ${budget === 1 ? "its" : "their"} budget`, "work committed and handed off: Retry with a bigger budget, or Cancel"],
    [questions.length, `${plural(questions.length, "question")} the director could not answer`, "the worker went on with its own assumption; check it"],
    [s.landingPaused ? 1 : 0, "landing paused by your checkout", "commit, stash or move the files in the way"],
  ];
  const present = kinds.filter(([n]) => n > 0);
  const lines = present.map(([, phrase, what]) => `- ${phrase}: ${what}`);
  for (const q of questions.slice(0, 3)) lines.push(`    ${q.taskId} asked “${oneLine(q.question, 80)}” (${oneLine(q.error, 60)})`);
  if (questions.length > 3) lines.push(`    … and ${questions.length - 3} more`);
  return {
    count: present.reduce((sum, [n]) => sum + n, 0),
    summary: present.map(([, phrase]) => phrase).join(", "),
    lines,
  };
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
    ...(wants.count ? ["Needs you:", ...wants.lines, ""] : []),
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
