// The server's pop-ups (window/showMessage), grouped: a failed task's message carries every attempt's
// note, and several tasks can fail at once. One toast per burst names the tasks, with the first line
// of each note; the whole text stays in the Tasks view's tooltip and the server log.
import { oneLine } from "./format";

export interface Failure {
  taskId: string;
  note: string;
}

/** "Stoneforge: task t3 failed. <note>" -> the task and its note; anything else -> undefined. */
export function parseFailure(message: string): Failure | undefined {
  const m = /^Stoneforge: task (\S+) failed\.\s*([\s\S]*)$/.exec(message);
  return m ? { taskId: m[1]!, note: m[2]!.trim() } : undefined;
}

/** One toast for a burst of failures (the latest message per task). */
export function failureToast(failures: Failure[]): { text: string; taskIds: string[] } {
  const byTask = new Map<string, Failure>();
  for (const f of failures) byTask.set(f.taskId, f);
  const list = [...byTask.values()];
  if (list.length === 1) {
    const [f] = list as [Failure];
    return { text: `Stoneforge: task ${f.taskId} failed${f.note ? `: ${oneLine(f.note, 160)}` : "."}`, taskIds: [f.taskId] };
  }
  const ids = list.map((f) => f.taskId);
  return { text: `Stoneforge: ${list.length} tasks failed: ${ids.join(", ")}. ${oneLine(list[0]!.note, 100)}`.trim(), taskIds: ids };
}
