import { LatencySketch } from './sketch.js';
import type { StepObservations } from './statistics.js';

// Per-request outcomes of the two versions of a canary (SPEC §11, issue 13
// part 2), recorded by the master where each request ends: counters and one
// bounded sketch per latency kind, per version, per step — nothing allocated
// per request. The baseline's earlier steps are merged into one reference
// (what the canary is compared with once it has 100 %).

/** `timePerTokenMs` of a stream that ended well and reported none (an older worker build, one content event). */
export const TIME_PER_TOKEN_NOT_REPORTED = -1;
/** `timePerTokenMs` of a stream its client left after its first content: it has none, and it was a stream. */
export const TIME_PER_TOKEN_LEFT = -2;

/** One version's outcomes over one period (a step, or the baseline's earlier steps). */
class OutcomeTally {
  requests = 0;
  errors = 0;
  /** Streams that ended well (not failed, not left by their client), whether or not they reported a time per token. */
  streamsEnded = 0;
  /** Streams their client left after their first content (so with no time per token). */
  streamsLeft = 0;
  readonly firstTokenMs = new LatencySketch();
  readonly responseMs = new LatencySketch();
  readonly timePerTokenMs = new LatencySketch();

  record(isError: boolean, firstTokenMs: number, responseMs: number, timePerTokenMs: number): void {
    this.requests++;
    if (isError) this.errors++;
    if (firstTokenMs >= 0) this.firstTokenMs.record(firstTokenMs);
    if (responseMs >= 0) this.responseMs.record(responseMs);
    if (timePerTokenMs >= 0) {
      this.timePerTokenMs.record(timePerTokenMs);
      this.streamsEnded++;
    } else if (timePerTokenMs === TIME_PER_TOKEN_NOT_REPORTED) this.streamsEnded++;
    else if (timePerTokenMs === TIME_PER_TOKEN_LEFT) this.streamsLeft++;
  }

  /**
   * A request given up on before its first token or answer: its wait is its value in the latency sample (what nginx
   * logs for a 499, and Flagger's latency query reads), on both versions alike; it is no request of the error rate.
   */
  recordWait(isStream: boolean, waitedMs: number): void {
    if (waitedMs >= 0) (isStream ? this.firstTokenMs : this.responseMs).record(waitedMs);
  }

  merge(other: OutcomeTally): void {
    this.requests += other.requests;
    this.errors += other.errors;
    this.streamsEnded += other.streamsEnded;
    this.streamsLeft += other.streamsLeft;
    this.firstTokenMs.merge(other.firstTokenMs);
    this.responseMs.merge(other.responseMs);
    this.timePerTokenMs.merge(other.timePerTokenMs);
  }

  reset(): void {
    this.requests = 0;
    this.errors = 0;
    this.streamsEnded = 0;
    this.streamsLeft = 0;
    this.firstTokenMs.reset();
    this.responseMs.reset();
    this.timePerTokenMs.reset();
  }
}

/** Both versions' tallies for the canary's current step, and the baseline's earlier steps. */
export class CanaryOutcomes {
  readonly baseline = new OutcomeTally();
  readonly canary = new OutcomeTally();
  readonly baselinePreviousSteps = new OutcomeTally();

  /** A new step: the baseline's step joins the reference; both step tallies start from zero. */
  nextStep(): void {
    this.baselinePreviousSteps.merge(this.baseline);
    this.baseline.reset();
    this.canary.reset();
  }

  /** The judge's input for the current step (views over the live tallies; no copy). */
  observations(): StepObservations {
    const { baseline, canary, baselinePreviousSteps: previous } = this;
    return {
      errors: {
        baseline: { requests: baseline.requests, errors: baseline.errors },
        canary: { requests: canary.requests, errors: canary.errors },
        baselinePreviousSteps: { requests: previous.requests, errors: previous.errors },
      },
      firstTokenMs: {
        baseline: baseline.firstTokenMs,
        canary: canary.firstTokenMs,
        baselinePreviousSteps: previous.firstTokenMs,
      },
      responseMs: {
        baseline: baseline.responseMs,
        canary: canary.responseMs,
        baselinePreviousSteps: previous.responseMs,
      },
      timePerTokenMs: {
        baseline: baseline.timePerTokenMs,
        canary: canary.timePerTokenMs,
        baselinePreviousSteps: previous.timePerTokenMs,
      },
      streamsEnded: {
        baseline: baseline.streamsEnded,
        canary: canary.streamsEnded,
        baselinePreviousSteps: previous.streamsEnded,
      },
      streamsLeft: {
        baseline: baseline.streamsLeft,
        canary: canary.streamsLeft,
        baselinePreviousSteps: previous.streamsLeft,
      },
    };
  }
}
