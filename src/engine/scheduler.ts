// Dispatches the plan's downloads to the pool: at most `jobs` connections per registry host,
// tokens from the main thread's client (refreshed when a worker reports a 401), other source
// repositories tried when one fails, and progress sampled from the workers' shared counters.
import { randomUUID } from 'node:crypto';
import type { Cache } from '../cache/cache.js';
import type { HasherKind } from '../hash/hasher.js';
import type { RegistryClient } from '../registry/client.js';
import { sleep } from '../registry/retry.js';
import type { EngineEvents } from './events.js';
import { Semaphore } from './limit.js';
import type { PlannedBlob } from './plan.js';
import type { DownloadPool } from './pool.js';
import type { DownloadResult } from './task.js';

export interface ScheduleOptions {
  cache: Cache;
  client: RegistryClient;
  pool: DownloadPool;
  /** Connections per registry host. */
  jobs: number;
  hasher: HasherKind;
  events: EngineEvents;
  checkpointBytes?: number;
  /** Stop dispatching after the first failure (no --keep-going). */
  failFast: boolean;
}

export interface ScheduleReport {
  fetchedBytes: number;
  resumedBytes: number;
  downloaded: number;
  failed: Map<string, string>;
}

const AUTH_RETRIES = 2;
const BUSY_POLL_MS = 250;

export async function runDownloads(queue: PlannedBlob[], opts: ScheduleOptions): Promise<ScheduleReport> {
  const report: ScheduleReport = { fetchedBytes: 0, resumedBytes: 0, downloaded: 0, failed: new Map() };
  const owner = `${process.pid}-${randomUUID()}`;
  const limits = new Map<string, Semaphore>();
  const limitFor = (host: string) => {
    let s = limits.get(host);
    if (!s) limits.set(host, (s = new Semaphore(opts.jobs)));
    return s;
  };
  const progress = new SharedArrayBuffer(8 * Math.max(1, queue.length));
  const done = new Float64Array(progress);
  const total = queue.reduce((n, b) => n + b.size, 0);
  const abort = new AbortController();
  let active = 0;

  const ticker = setInterval(() => {
    let sum = 0;
    for (let i = 0; i < done.length; i++) sum += done[i]!;
    opts.events.emit({ type: 'progress', done: sum, total, active });
  }, 500);

  const one = async (blob: PlannedBlob, slot: number): Promise<void> => {
    let lastError = 'no source repository';
    for (const source of blob.sources) {
      let authRetries = 0;
      for (;;) {
        if (abort.signal.aborted) return;
        const release = await limitFor(source.registry).acquire();
        let result: DownloadResult;
        try {
          if (abort.signal.aborted) return;
          active++;
          opts.events.emit({ type: 'blob-start', digest: blob.digest, size: blob.size, resumeFrom: blob.resumeFrom });
          const auth = await opts.client.authorization(source.registry, source.repository);
          result = await opts.pool.run(
            {
              cacheDir: opts.cache.dir,
              digest: blob.digest,
              size: blob.size,
              mediaType: blob.mediaType,
              url: `${opts.client.baseUrl(source.registry)}/v2/${source.repository}/blobs/${blob.digest}`,
              headers: auth ? { authorization: auth, 'user-agent': 'ocisave/0.1' } : { 'user-agent': 'ocisave/0.1' },
              hasher: opts.hasher,
              progress,
              slot,
              checkpointBytes: opts.checkpointBytes ?? 8 * 1024 * 1024,
              owner,
            },
            abort.signal,
          );
        } catch (err) {
          if (abort.signal.aborted) return;
          result = { ok: false, code: 'failed', message: (err as Error).message, fetched: 0 };
        } finally {
          active--;
          release();
        }
        report.fetchedBytes += result.fetched;
        if (result.ok) {
          done[slot] = blob.size;
          if (!result.alreadyCached) report.downloaded++;
          report.resumedBytes += result.resumedFrom;
          opts.events.emit({ type: 'blob-done', digest: blob.digest, size: blob.size, fetched: result.fetched });
          return;
        }
        if (result.code === 'busy') {
          // Another process holds it: wait for it to land in the cache (or for its lock to go stale).
          await sleep(BUSY_POLL_MS);
          continue;
        }
        if (result.code === 'unauthorized' && authRetries++ < AUTH_RETRIES) {
          opts.client.invalidate(source.registry, source.repository);
          opts.events.emit({ type: 'blob-retry', digest: blob.digest, reason: 'token refreshed', attempt: authRetries });
          continue;
        }
        lastError = `${source.registry}/${source.repository}: ${result.message}`;
        break;
      }
    }
    report.failed.set(blob.digest, lastError);
    opts.events.emit({ type: 'blob-failed', digest: blob.digest, error: lastError });
    if (opts.failFast) abort.abort();
  };

  try {
    await Promise.all(queue.map((blob, slot) => one(blob, slot)));
  } finally {
    clearInterval(ticker);
  }
  return report;
}
