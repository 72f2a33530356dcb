// Small text formatters shared by the views and documents.

/** 52_100 -> "52.1k"; 140_000 -> "140k"; 950 -> "950". */
export function tokens(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${trimZero((n / 1000).toFixed(1))}k`;
  return `${trimZero((n / 1_000_000).toFixed(2))}M`;
}

function trimZero(s: string): string {
  return s.replace(/\.0+$/, "").replace(/(\.\d*?)0+$/, "$1");
}

/** Context size against the handoff threshold: "52.1k / 140k tokens (37%)". */
export function contextUse(contextTokens: number, handoffAtTokens: number): string {
  if (handoffAtTokens <= 0) return `${tokens(contextTokens)} tokens`;
  const pct = Math.round((100 * contextTokens) / handoffAtTokens);
  return `${tokens(contextTokens)} / ${tokens(handoffAtTokens)} tokens (${pct}%)`;
}

/** The same, quieter, for a row (the threshold is in the tooltip): "52.1k tokens (37%)". */
export function contextShort(contextTokens: number, handoffAtTokens: number): string {
  if (handoffAtTokens <= 0) return `${tokens(contextTokens)} tokens`;
  return `${tokens(contextTokens)} tokens (${Math.round((100 * contextTokens) / handoffAtTokens)}%)`;
}

/** A check command without the directories of the programs it runs (a venv's interpreter, say):
 * "/r/.venv/bin/python -m pytest" -> "python -m pytest". Other paths are the check's own business. */
export function shortCommand(command: string): string {
  return command.replace(/(^|\s)\/\S*\/bin\/(\S+)/g, "$1$2");
}

/** "$0.42"; sub-cent amounts keep one significant digit so a cheap session does not read "$0.00". */
export function cost(usd: number): string {
  if (usd === 0) return "$0";
  if (usd < 0.01) return `$${usd.toPrecision(1)}`;
  return `$${usd.toFixed(2)}`;
}

/** "120 ms", "42s", "3m 05s", "1h 02m". */
export function duration(seconds: number): string {
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))} ms`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** How long something has run, ticking by whole seconds: "just started", "7s", "3m 05s". */
export function elapsed(seconds: number): string {
  return seconds < 1 ? "just started" : duration(Math.floor(seconds));
}

/** Seconds between an ISO time and `now`, never negative. */
export function secondsSince(iso: string, now: Date): number {
  return Math.max(0, (now.getTime() - Date.parse(iso)) / 1000);
}

/** "2026-11-27T20:03:05.765000Z" -> "2026-11-27 20:03 UTC". */
export function when(iso: string | null): string {
  if (!iso) return "";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(iso);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/** "in_progress" -> "in progress". */
export function humanize(status: string): string {
  return status.replace(/_/g, " ");
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** First line of a text, cut to `max` characters with an ellipsis. */
export function oneLine(text: string, max = 80): string {
  const first = text.trim().split(/\r?\n/, 1)[0] ?? "";
  return first.length > max ? `${first.slice(0, max - 1)}…` : first;
}

export function shortSha(sha: string | null): string {
  return sha ? sha.slice(0, 8) : "";
}
