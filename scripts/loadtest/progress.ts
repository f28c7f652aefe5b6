// Progress on a TTY (issue 6): one status line rewritten in place on stderr.
// Off a TTY (CI, --json, the smoke test) phases are printed as plain lines,
// and per-second ticks are dropped.

export class Progress {
  readonly #isTty: boolean;
  readonly #isQuiet: boolean;
  #hasLine = false;
  readonly #startedAt = performance.now();

  constructor(options: { isQuiet: boolean }) {
    this.#isTty = process.stderr.isTTY === true;
    this.#isQuiet = options.isQuiet;
  }

  /** A phase change: always shown (unless quiet), on its own line. */
  phase(text: string): void {
    if (this.#isQuiet) return;
    this.#clear();
    process.stderr.write(`• [${((performance.now() - this.#startedAt) / 1000).toFixed(1)} s] ${text}\n`);
  }

  /** A transient status (every second during a run): TTY only. */
  status(text: string): void {
    if (!this.#isTty || this.#isQuiet) return;
    this.#clear();
    process.stderr.write(`  ${text}`.slice(0, (process.stderr.columns ?? 100) - 1));
    this.#hasLine = true;
  }

  done(): void {
    this.#clear();
  }

  #clear(): void {
    if (!this.#hasLine) return;
    process.stderr.write('\r\x1b[2K');
    this.#hasLine = false;
  }
}
