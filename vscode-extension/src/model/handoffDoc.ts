// A handoff as a readable markdown document: what is done, what remains, and where to pick up.
import type { Handoff, Task } from "../protocol";
import { shortSha, when } from "./format";

/** Handoffs normally have ids; the index keeps an id-less one addressable. */
export function handoffKey(h: Handoff, index: number): string {
  return h.id ?? `@${index}`;
}

export function findHandoff(handoffs: Handoff[], key: string): Handoff | undefined {
  return handoffs.find((h, i) => handoffKey(h, i) === key);
}

function list(items: string[], empty: string, code = false): string {
  if (!items.length) return `_${empty}_`;
  return items.map((i) => (code ? `- \`${i}\`` : `- ${i}`)).join("\n");
}

function para(text: string, empty: string): string {
  return text.trim() ? text.trim() : `_${empty}_`;
}

export function handoffMarkdown(h: Handoff, task?: Pick<Task, "id" | "title" | "branch">): string {
  const heading = task ? `# Handoff ${h.id ?? ""} — ${task.title} (${task.id})` : `# Handoff ${h.id ?? ""}`;
  const by = h.source === "orchestrator" ? "written by the orchestrator from the facts" : "written by the agent";
  const meta = [
    `${when(h.createdAt)}, ${by}`,
    h.sessionId ? `session ${h.sessionId}` : undefined,
    h.commit ? `at commit \`${shortSha(h.commit)}\`` : undefined,
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
    list(h.filesTouched, "none", true),
    "",
    "## Decisions",
    "",
    list(h.decisions, "none recorded"),
    "",
    "## Failing tests",
    "",
    list(h.failingTests, "none", true),
    "",
  ].join("\n");
}
