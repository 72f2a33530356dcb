// Runs an async job at most once at a time; requests that arrive while it runs fold into one more
// run after it. A burst of `stoneforge/changed` notifications costs at most two reloads, and the
// last reload always sees the newest state.

export class Coalescer {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly job: () => Promise<void>) {}

  /** Resolves once a run that started after this call has finished. */
  trigger(): Promise<void> {
    if (this.running) {
      this.again = true; // the loop below runs the job once more before `running` resolves
      return this.running;
    }
    this.running = this.loop();
    return this.running;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        try {
          await this.job();
        } catch {
          // The job reports its own errors; a failed run must not stop later ones.
        }
      } while (this.again);
    } finally {
      this.running = undefined;
    }
  }
}
