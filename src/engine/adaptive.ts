// Adaptive connections per registry host: how many downloads run at once, and how big a range of a
// split blob is. Pure decisions from what the scheduler measured (bytes per sampling period, busy
// connections, throttling answers); no clock, no I/O, so tests give it numbers and read the answers.
//
// Connections: start at START_CONNECTIONS, double while the aggregate rate of the host grows by at
// least GROWTH_GAIN from one level to the next (a link capped per connection keeps gaining, a
// saturated one stops), never above the ceiling (--jobs). A 429, a 503 or a reset halves the limit,
// at most once a period (a burst of answers to requests sent together is one signal, as TCP takes
// one loss per round trip). A plateau is probed again every PROBE_PERIODS periods.
//
// Ranges: a split blob's range is SEGMENT_SECONDS of transfer at the rate one connection reaches,
// bounded by [MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES]; until a rate is measured, 32 MiB (the fixed
// size before this controller).

/** Where a new host starts: the fixed number before adaptation, which already fills this 2-core machine on loopback. */
export const START_CONNECTIONS = 8;
/** The default ceiling (--jobs): 32 connections at 2 MB/s each fill a 64 MB/s link. */
export const DEFAULT_MAX_CONNECTIONS = 32;
/**
 * A level counts as better when it moved this much more. A doubling on a link capped per connection
 * gains ~100 %; on this loaded 2-core machine, where the CPU is the limit, 8 → 32 connections lost
 * 26 % (15.6 s against 21.2 s) while a ramp-up measured as "growth": 20 % keeps the noise out.
 */
export const GROWTH_GAIN = 0.2;
/** Periods skipped after a change: new connections spend a round trip or two before bytes flow. */
export const SETTLE_PERIODS = 1;
/** Periods skipped at the start, once bytes flow: the first ones still hold connection set-up and resolving. */
export const START_SETTLE_PERIODS = 2;
/** Periods measured at one level before judging it. */
export const MEASURE_PERIODS = 2;
/** Periods at a plateau before one more probe upwards (the link or the load may have changed). */
export const PROBE_PERIODS = 20;
/**
 * One range is a few seconds of transfer: a request's round trip (≤150 ms) costs 5 % of it, and a
 * blob of 6-7 s at its connection's rate (52 MiB at 8 MB/s) is split in two rather than left as the tail.
 */
export const SEGMENT_SECONDS = 3;
export const MIN_SEGMENT_BYTES = 8 * 1024 * 1024;
export const MAX_SEGMENT_BYTES = 256 * 1024 * 1024;
/** The range size until one connection's rate is known: the fixed size before adaptation. */
export const UNMEASURED_SEGMENT_BYTES = 32 * 1024 * 1024;

/** What the scheduler saw of one host during one sampling period. */
export interface HostSample {
  /** Bytes received from the host during the period. */
  bytes: number;
  /** Length of the period. */
  ms: number;
  /** Connections busy during the period (average). */
  busy: number;
  /** Downloads waiting for a connection at the end of the period. */
  waiting: number;
  /** 429, 503 and reset answers during the period. */
  throttled: number;
}

type Phase = 'growing' | 'steady';

export class ConnectionController {
  private current: number;
  private phase: Phase = 'growing';
  /** Rate (bytes/s) measured at the previous level, and that level. */
  private previous?: { rate: number; limit: number };
  private skip = START_SETTLE_PERIODS;
  private window: HostSample[] = [];
  private sinceProbe = 0;
  /** Bytes/s of one busy connection, smoothed; undefined until measured. */
  private perConnection?: number;

  constructor(
    readonly ceiling: number,
    start = START_CONNECTIONS,
  ) {
    if (!Number.isSafeInteger(ceiling) || ceiling < 1) throw new Error(`connection ceiling must be a positive integer, got ${ceiling}`);
    this.current = Math.max(1, Math.min(ceiling, start));
  }

  /** Connections allowed now. */
  get limit(): number {
    return this.current;
  }

  /** The smoothed rate of one connection (bytes/s), once measured. */
  get connectionRate(): number | undefined {
    return this.perConnection;
  }

  /** Takes one period's measurements; returns the limit for the next period. */
  sample(s: HostSample): number {
    if (s.throttled > 0) return this.backOff();
    if (s.busy >= 0.5 && s.ms > 0 && s.bytes > 0) {
      const rate = (s.bytes * 1000) / s.ms / s.busy;
      // Smoothing over ~4 periods: one stalled or bursty period does not resize ranges.
      this.perConnection = this.perConnection === undefined ? rate : 0.75 * this.perConnection + 0.25 * rate;
    }
    // Nothing moved (nothing to fetch yet, or all waiting on first bytes): not a measurement.
    if (s.bytes === 0) return this.current;
    if (this.skip > 0) {
      this.skip--;
      return this.current;
    }
    // Only a period with every connection busy says what the level can do: with fewer downloads
    // than connections, more connections could not have moved more.
    if (s.busy < this.current * 0.9 || s.waiting === 0) {
      if (s.busy < this.current * 0.9) this.window = [];
      return this.current;
    }
    this.window.push(s);
    if (this.window.length < MEASURE_PERIODS) return this.current;
    const rate = rateOf(this.window);
    this.window = [];
    return this.phase === 'growing' ? this.judgeGrowth(rate) : this.maybeProbe(rate);
  }

  private judgeGrowth(rate: number): number {
    const before = this.previous;
    if (before && rate < before.rate * (1 + GROWTH_GAIN)) {
      // Under 10 % more for the extra connections: the lower level does nearly as well with fewer.
      this.phase = 'steady';
      this.sinceProbe = 0;
      this.change(before.limit);
      this.previous = { rate: before.rate, limit: before.limit };
      return this.current;
    }
    this.previous = { rate, limit: this.current };
    if (this.current >= this.ceiling) {
      this.phase = 'steady';
      this.sinceProbe = 0;
      return this.current;
    }
    return this.change(Math.min(this.ceiling, this.current * 2));
  }

  private maybeProbe(rate: number): number {
    this.previous = { rate, limit: this.current };
    this.sinceProbe += MEASURE_PERIODS;
    if (this.sinceProbe < PROBE_PERIODS || this.current >= this.ceiling) return this.current;
    this.phase = 'growing';
    return this.change(Math.min(this.ceiling, Math.max(this.current + 1, Math.ceil(this.current * 1.25))));
  }

  private backOff(): number {
    this.phase = 'steady';
    this.sinceProbe = 0;
    this.previous = undefined;
    return this.change(Math.max(1, Math.floor(this.current / 2)));
  }

  private change(limit: number): number {
    this.current = limit;
    this.skip = SETTLE_PERIODS;
    this.window = [];
    return limit;
  }

  /** Range size for a blob split now: SEGMENT_SECONDS at one connection's rate, bounded. */
  segmentBytes(): number {
    if (this.perConnection === undefined) return UNMEASURED_SEGMENT_BYTES;
    const bytes = this.perConnection * SEGMENT_SECONDS;
    return Math.round(Math.min(MAX_SEGMENT_BYTES, Math.max(MIN_SEGMENT_BYTES, bytes)));
  }
}

function rateOf(samples: HostSample[]): number {
  let bytes = 0;
  let ms = 0;
  for (const s of samples) {
    bytes += s.bytes;
    ms += s.ms;
  }
  return ms > 0 ? (bytes * 1000) / ms : 0;
}
