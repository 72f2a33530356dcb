// When the server process dies, restart it, unless it keeps dying: more than `maxRestarts` within
// `windowMs` means something is wrong with the installation, and restarting would only spin.

export class RestartPolicy {
  private crashes: number[] = [];

  constructor(
    private readonly maxRestarts = 5,
    private readonly windowMs = 3 * 60_000,
  ) {}

  /** Record a crash at `now` (ms) and say whether to restart. */
  shouldRestart(now: number): boolean {
    this.crashes = this.crashes.filter((t) => now - t < this.windowMs);
    this.crashes.push(now);
    return this.crashes.length <= this.maxRestarts;
  }

  reset(): void {
    this.crashes = [];
  }
}
