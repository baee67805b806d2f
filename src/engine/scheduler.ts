// Dispatches the plan's downloads to the pool: at most `jobs` connections per registry host,
// tokens from the main thread's client (refreshed when a worker reports a 401), other source
// repositories tried when one fails, big blobs split into ranges fetched in parallel, and
// progress sampled from the workers' shared counters.
import { randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Cache } from '../cache/cache.js';
import type { HasherKind } from '../hash/hasher.js';
import type { RegistryClient } from '../registry/client.js';
import { sleep } from '../registry/retry.js';
import type { BlobSource } from '../resolve/graph.js';
import type { EngineEvents } from './events.js';
import { Semaphore } from './limit.js';
import type { PlannedBlob } from './plan.js';
import type { DownloadPool, WorkerTaskName } from './pool.js';
import type { DownloadResult, DownloadTask } from './task.js';

type Done = Extract<DownloadResult, { ok: true }>;

export interface ScheduleOptions {
  cache: Cache;
  client: RegistryClient;
  pool: DownloadPool;
  /** Connections per registry host. */
  jobs: number;
  hasher: HasherKind;
  events: EngineEvents;
  checkpointBytes?: number;
  /** Blobs of at least twice this size are fetched as parallel ranges of this size; 0 turns it off. */
  segmentBytes?: number;
  /** Stop dispatching after the first failure (no --keep-going). */
  failFast: boolean;
  /** Stop (Ctrl-C): running downloads checkpoint and return, nothing new starts. */
  signal?: AbortSignal;
}

export interface ScheduleReport {
  fetchedBytes: number;
  resumedBytes: number;
  downloaded: number;
  failed: Map<string, string>;
}

/** A checkpoint is a buffer flush and an LMDB record whose commit is not waited for: cheap enough to take often. */
const CHECKPOINT_BYTES = 2 * 1024 * 1024;
const AUTH_RETRIES = 2;
const BUSY_POLL_MS = 250;
const USER_AGENT = 'ocisave/0.1';

/** [start, end) ranges of `segmentBytes` covering a blob, or none when it is too small to split. */
export function segmentsOf(size: number, segmentBytes: number | undefined): [number, number][] {
  if (!segmentBytes || size < 2 * segmentBytes) return [];
  const out: [number, number][] = [];
  for (let start = 0; start < size; start += segmentBytes) out.push([start, Math.min(size, start + segmentBytes)]);
  return out;
}

export async function runDownloads(queue: PlannedBlob[], opts: ScheduleOptions): Promise<ScheduleReport> {
  const report: ScheduleReport = { fetchedBytes: 0, resumedBytes: 0, downloaded: 0, failed: new Map() };
  const owner = `${process.pid}-${randomUUID()}`;
  const limits = new Map<string, Semaphore>();
  const limitFor = (host: string) => {
    let s = limits.get(host);
    if (!s) limits.set(host, (s = new Semaphore(opts.jobs)));
    return s;
  };
  // One progress slot per task: a whole blob, or each segment of a split one.
  const plans = queue.map((blob) => ({ blob, segments: segmentsOf(blob.size, opts.segmentBytes) }));
  const firstSlot: number[] = [];
  let slots = 0;
  for (const p of plans) {
    firstSlot.push(slots);
    slots += Math.max(1, p.segments.length);
  }
  const progress = new SharedArrayBuffer(8 * Math.max(1, slots));
  const done = new Float64Array(progress);
  const total = queue.reduce((n, b) => n + b.size, 0);
  const abort = new AbortController();
  const cancel = new SharedArrayBuffer(4);
  abort.signal.addEventListener('abort', () => Atomics.store(new Int32Array(cancel), 0, 1));
  opts.signal?.addEventListener('abort', () => abort.abort());
  let active = 0;
  const started = new Set<string>();

  const ticker = setInterval(() => {
    let sum = 0;
    for (let i = 0; i < done.length; i++) sum += done[i]!;
    opts.events.emit({ type: 'progress', done: sum, total, active });
  }, 500);

  const taskFor = (blob: PlannedBlob, source: BlobSource, slot: number, auth: string | undefined): DownloadTask => ({
    cacheDir: opts.cache.dir,
    digest: blob.digest,
    size: blob.size,
    mediaType: blob.mediaType,
    url: `${opts.client.baseUrl(source.registry)}/v2/${source.repository}/blobs/${blob.digest}`,
    headers: auth ? { authorization: auth, 'user-agent': USER_AGENT } : { 'user-agent': USER_AGENT },
    hasher: opts.hasher,
    progress,
    slot,
    checkpointBytes: opts.checkpointBytes ?? CHECKPOINT_BYTES,
    owner,
    cancel,
  });

  /** One worker task against one source, holding a connection slot, refreshing the token on 401. */
  const dispatch = async (blob: PlannedBlob, source: BlobSource, slot: number, name: WorkerTaskName, range?: [number, number]): Promise<DownloadResult> => {
    for (let authRetries = 0; ; ) {
      if (abort.signal.aborted) return { ok: false, code: 'failed', message: 'cancelled', fetched: 0 };
      const release = await limitFor(source.registry).acquire();
      let result: DownloadResult;
      try {
        active++;
        if (!started.has(blob.digest)) {
          started.add(blob.digest);
          opts.events.emit({ type: 'blob-start', digest: blob.digest, size: blob.size });
        }
        const auth = await opts.client.authorization(source.registry, source.repository);
        const task = taskFor(blob, source, slot, auth);
        result = await opts.pool.run(range ? { ...task, start: range[0], end: range[1] } : task, name);
      } catch (err) {
        result = { ok: false, code: 'failed', message: abort.signal.aborted ? 'cancelled' : (err as Error).message, fetched: 0 };
      } finally {
        active--;
        release();
      }
      report.fetchedBytes += result.fetched;
      if (!result.ok && result.code === 'unauthorized' && authRetries++ < AUTH_RETRIES) {
        opts.client.invalidate(source.registry, source.repository);
        opts.events.emit({ type: 'blob-retry', digest: blob.digest, reason: 'token refreshed', attempt: authRetries });
        continue;
      }
      return result;
    }
  };

  /** Try each source in turn; `busy` (another process has the blob) waits for that process. */
  const fromAnySource = async (blob: PlannedBlob, attempt: (source: BlobSource) => Promise<DownloadResult>): Promise<Done | string> => {
    let lastError = 'no source repository';
    for (const source of blob.sources) {
      for (;;) {
        const result = await attempt(source);
        if (result.ok) return result;
        if (result.code === 'busy' && !abort.signal.aborted) {
          await sleep(BUSY_POLL_MS);
          continue;
        }
        lastError = `${source.registry}/${source.repository}: ${result.message}`;
        break;
      }
      if (abort.signal.aborted) break;
    }
    return lastError;
  };

  const whole = (blob: PlannedBlob, slot: number) => fromAnySource(blob, (source) => dispatch(blob, source, slot, 'default'));

  /** Ranges in parallel into one partial file, under this process's lock on the blob; then one hash of the whole. */
  const split = async (blob: PlannedBlob, segments: [number, number][], slot0: number): Promise<Done | string> => {
    while (!opts.cache.tryLock(blob.digest, owner)) {
      if (abort.signal.aborted) return 'cancelled';
      await sleep(BUSY_POLL_MS);
    }
    try {
      if (opts.cache.hasBlob(blob.digest)) return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: true, retries: 0 };
      await (await open(opts.cache.partialPath(blob.digest), 'a')).close();
      const parts = await Promise.all(segments.map((range, i) => fromAnySource(blob, (source) => dispatch(blob, source, slot0 + i, 'segment', range))));
      const failedPart = parts.find((p): p is string => typeof p === 'string');
      if (failedPart) return failedPart;
      const verified = await fromAnySource(blob, (source) => dispatch(blob, source, slot0, 'verify'));
      if (typeof verified === 'string') return verified;
      const resumedFrom = parts.reduce((n, p) => n + (typeof p === 'string' ? 0 : p.resumedFrom), 0);
      return { ...verified, resumedFrom, fetched: parts.reduce((n, p) => n + (typeof p === 'string' ? 0 : p.fetched), 0) };
    } finally {
      opts.cache.unlock(blob.digest, owner);
    }
  };

  const one = async ({ blob, segments }: (typeof plans)[number], index: number): Promise<void> => {
    const slot = firstSlot[index]!;
    opts.events.emit({ type: 'blob-queued', digest: blob.digest, size: blob.size, resumeFrom: blob.resumeFrom });
    const result = segments.length ? await split(blob, segments, slot) : await whole(blob, slot);
    if (typeof result !== 'string') {
      if (!result.alreadyCached) report.downloaded++;
      report.resumedBytes += result.resumedFrom;
      opts.events.emit({ type: 'blob-done', digest: blob.digest, size: blob.size, fetched: result.fetched });
      return;
    }
    // Cancelled by another blob's failure or by the caller: not a failure of its own.
    if (abort.signal.aborted && result.endsWith('cancelled')) return;
    report.failed.set(blob.digest, result);
    opts.events.emit({ type: 'blob-failed', digest: blob.digest, error: result });
    if (opts.failFast) abort.abort();
  };

  try {
    await Promise.all(plans.map((p, i) => one(p, i)));
  } finally {
    clearInterval(ticker);
  }
  return report;
}
