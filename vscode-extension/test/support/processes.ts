// Process bookkeeping for the e2e test: find every descendant of a process we started (through
// /proc) and stop them all by pid, so nothing outlives the test, even when it fails.
import { type ChildProcess } from "node:child_process";
import * as fs from "node:fs";

function children(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/))
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export function descendants(pid: number): number[] {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const child of children(queue.shift()!)) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers signal 0; it is dead for our purposes.
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERM the process, give it `graceMs` to take its children down with it, then SIGKILL every
 * pid of the tree (recorded before the first signal) that is still alive. Returns the pids seen.
 */
export async function stopTree(proc: ChildProcess, graceMs = 5000): Promise<number[]> {
  const pid = proc.pid;
  if (pid === undefined) return [];
  const tree = [pid, ...descendants(pid)];
  signal(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && tree.some(alive)) {
    for (const p of descendants(pid)) if (!tree.includes(p)) tree.push(p);
    await sleep(100);
  }
  for (const p of tree.filter(alive)) signal(p, "SIGKILL");
  const until = Date.now() + 2000;
  while (Date.now() < until && tree.some(alive)) await sleep(50);
  return tree;
}
