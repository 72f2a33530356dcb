// A handoff as a readable markdown document: what is done, what remains, and where to pick up.
// Task and merge request ids, the commit and the files are links (docLinks).
import type { Handoff, Task } from "../protocol";
import { commitLink, fileLink, linkIds, taskLink, testFile } from "./docLinks";
import { when } from "./format";

/** Handoffs normally have ids; the index keeps an id-less one addressable. */
export function handoffKey(h: Handoff, index: number): string {
  return h.id ?? `@${index}`;
}

export function findHandoff(handoffs: Handoff[], key: string): Handoff | undefined {
  return handoffs.find((h, i) => handoffKey(h, i) === key);
}

function list(items: string[], empty: string, item: (i: string) => string): string {
  if (!items.length) return `_${empty}_`;
  return items.map((i) => `- ${item(i)}`).join("\n");
}

function para(text: string, empty: string): string {
  return text.trim() ? linkIds(text.trim()) : `_${empty}_`;
}

export function handoffMarkdown(h: Handoff, task?: Pick<Task, "id" | "title" | "branch">): string {
  const heading = task ? `# Handoff ${h.id ?? ""} — ${task.title} (${taskLink(task.id)})` : `# Handoff ${h.id ?? ""}`;
  const by = h.source === "orchestrator" ? "written by the orchestrator from the facts" : "written by the agent";
  // The files are the task's: opened in its checkout while that exists.
  const taskId = task?.id ?? h.taskId;
  const meta = [
    `${when(h.createdAt)}, ${by}`,
    h.sessionId ? `session ${h.sessionId}` : undefined,
    h.commit ? `at commit ${commitLink(h.commit)}` : undefined,
    task?.branch ? `on \`${task.branch}\`` : undefined,
  ].filter(Boolean);
  return [
    heading.replace(/ {2,}/g, " "),
    "",
    `_${meta.join(" · ")}_`,
    "",
    "## Done",
    "",
    para(h.done, "nothing recorded"),
    "",
    "## Remaining",
    "",
    para(h.remaining, "nothing recorded"),
    "",
    "## Next step",
    "",
    para(h.nextStep, "none given"),
    "",
    "## Files touched",
    "",
    list(h.filesTouched, "none", (f) => fileLink(f, { taskId })),
    "",
    "## Decisions",
    "",
    list(h.decisions, "none recorded", (d) => linkIds(d)),
    "",
    "## Failing tests",
    "",
    list(h.failingTests, "none", (t) => fileLink(testFile(t), { taskId, label: t })),
    "",
  ].join("\n");
}
