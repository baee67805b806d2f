// Time limits on every registry exchange, as curl has them: a connect timeout, a wait for the
// response headers, a low-speed rule (--speed-limit/--speed-time) and a cap on retries. undici's own
// bodyTimeout restarts on every byte, so a registry sending 1 byte/s was never given up on; the
// low-speed rule is what bounds that. A leaf module: it imports nothing of ours, and the download
// workers receive these limits in each task (plain numbers, structured-clone safe).
import { OcisaveError } from '../util/errors.js';

export interface NetLimits {
  /** TCP (and TLS) connection set-up, ms. */
  connectTimeoutMs: number;
  /** From a request sent to its response headers, ms. */
  headersTimeoutMs: number;
  /** Bytes per second a transfer must average over each `speedTimeMs` window; 0 turns the rule off. */
  speedLimit: number;
  speedTimeMs: number;
  /** Retries after the first attempt: per request on the main thread and in push, per blob in downloads. */
  retries: number;
}

/**
 * Defaults. connect 10 s: undici's and Go's dialer order of magnitude; a registry that takes longer
 * to accept is down. headers 30 s: distribution answers a manifest or a blob's first byte in
 * milliseconds, and a PUT completing a blob upload hashes nothing more (it hashed while receiving).
 * 1 KiB/s over 30 s: a link that slow moves one 30 MB layer in 8 hours; curl has no default, and
 * this one only drops connections that have all but stopped. 5 retries: the count this client used
 * before the limits were flags (6 attempts).
 */
export const DEFAULT_NET_LIMITS: Readonly<NetLimits> = {
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  speedLimit: 1024,
  speedTimeMs: 30_000,
  retries: 5,
};

/** Without the low-speed rule, a body that stops for this long fails (undici's timer, reset by each byte). */
const IDLE_BODY_MS = 60_000;

/** Options for an undici Agent (or Client): its connect timeout. Spread into the Agent's options. */
export function agentTimeouts(limits: NetLimits): { connectTimeout: number } {
  return { connectTimeout: limits.connectTimeoutMs };
}

/** Options for one undici request or dispatch. */
export function requestTimeouts(limits: NetLimits): { headersTimeout: number; bodyTimeout: number } {
  return { headersTimeout: limits.headersTimeoutMs, bodyTimeout: IDLE_BODY_MS };
}

export class LowSpeedError extends OcisaveError {
  constructor(limits: NetLimits) {
    super('TIMEOUT', `transfer slower than ${limits.speedLimit} bytes/s for ${limits.speedTimeMs / 1000} s (--speed-limit, --speed-time)`);
    this.name = 'LowSpeedError';
  }
}

/**
 * Watches one transfer: every `speedTimeMs` it compares the bytes seen in that window with
 * `speedLimit × speedTimeMs`, and calls `onSlow` once when they fall short. A window in which the
 * caller paused the transfer (its own disk write) does not count. stop() when the transfer ends.
 */
export class SpeedWatch {
  private bytes = 0;
  private paused = false;
  private pausedInWindow = false;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: NetLimits,
    private readonly onSlow: (err: LowSpeedError) => void,
  ) {
    if (limits.speedLimit > 0 && limits.speedTimeMs > 0) {
      this.timer = setInterval(() => this.check(), limits.speedTimeMs);
      this.timer.unref();
    }
  }

  add(n: number): void {
    this.bytes += n;
  }

  pause(): void {
    this.paused = true;
    this.pausedInWindow = true;
  }

  resume(): void {
    this.paused = false;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private check(): void {
    const enough = this.bytes >= (this.limits.speedLimit * this.limits.speedTimeMs) / 1000;
    const excused = this.paused || this.pausedInWindow;
    this.bytes = 0;
    this.pausedInWindow = this.paused;
    if (enough || excused) return;
    this.stop();
    this.onSlow(new LowSpeedError(this.limits));
  }
}
