// Retry policy shared by the main thread (manifests, tokens) and the download workers (blobs):
// resets, 5xx and 429 are retried with exponential backoff, honouring Retry-After. How many
// retries is a flag (--retries, NetLimits in timeouts.ts); push also has an overall budget.

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505);
}

const RETRYABLE_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  // The body ended before its Content-Length: a cut connection; what came is kept and resumed from.
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  // timeouts.ts: the low-speed rule dropped the connection (LowSpeedError); a new one (with Range) may do better.
  'TIMEOUT',
]);

/** Network-level failures worth another try (a refused connection may be a restarting registry). */
export function isRetryableError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return RETRYABLE_CODES.has(e?.code ?? '') || RETRYABLE_CODES.has(e?.cause?.code ?? '') || (err as Error)?.name === 'PrematureCloseError';
}

/** Longest wait a Retry-After can ask for; a server asking more is waited on this long, then retried. */
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * Milliseconds to wait before attempt `attempt` (1-based retry count). Retry-After is honoured in
 * its two RFC 9110 forms only, delay-seconds (digits) or an HTTP-date (it names a day and month):
 * anything else ("-1", "0x10", "1.5", which Number() or Date.parse() would read as something) is
 * ignored for the exponential wait.
 */
export function backoffMs(attempt: number, retryAfter?: string | string[] | null, baseMs = 200): number {
  const header = (Array.isArray(retryAfter) ? retryAfter[0] : retryAfter)?.trim();
  if (header && /^\d+$/.test(header)) return Math.min(Number(header) * 1000, MAX_RETRY_AFTER_MS);
  if (header && /[A-Za-z]/.test(header)) {
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.min(Math.max(0, date - Date.now()), MAX_RETRY_AFTER_MS);
  }
  const exp = baseMs * 2 ** (attempt - 1);
  return Math.min(exp + Math.random() * exp * 0.25, 10_000);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Time a whole command may spend failing: each failed attempt's duration and the wait before the
 * next one are charged; once the total passes `budgetMs`, nothing is retried any more. Requests
 * that run in parallel all charge it, so it runs out faster when everything fails at once.
 */
export class RetryBudget {
  private spentMs = 0;
  constructor(readonly budgetMs: number) {}

  /** Charge `ms`; false when the budget is spent (the caller gives up instead of retrying). */
  charge(ms: number): boolean {
    this.spentMs += ms;
    return this.spentMs <= this.budgetMs;
  }

  get exhausted(): boolean {
    return this.spentMs > this.budgetMs;
  }

  describe(): string {
    return `gave up after ${Math.round(this.spentMs / 1000)} s of failed attempts and retries (--retry-budget ${this.budgetMs / 1000})`;
  }
}

/** A connect or header timeout is retried this many times at most, whatever --retries says. */
export const TIMEOUT_RETRIES = 1;

/** The registry did not accept the connection, or did not answer, in time. */
export function isTimeoutError(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT';
}
