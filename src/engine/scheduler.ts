// Dispatches downloads to the pool as the plan finds them missing, while manifests still resolve:
// at most `jobs` connections per registry host, the largest waiting blob first, tokens from the
// main thread's client (refreshed when a worker reports a 401), other source repositories tried
// when one fails, big blobs split into ranges fetched in parallel, and progress sampled from the
// workers' shared counters. Blobs of a few KiB skip the pool (see INLINE_BYTES). How many
// connections a host gets, and how big a blob's ranges are, adapt to what the host delivers
// (adaptive.ts), unless the caller fixes them (--fixed-jobs, --segment-size).
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Cache } from '../cache/cache.js';
import { sha256Bytes, type HasherKind } from '../hash/hasher.js';
import type { RegistryClient } from '../registry/client.js';
import { sleep } from '../registry/retry.js';
import type { BlobSource } from '../resolve/graph.js';
import type { NetLimits } from '../registry/timeouts.js';
import type { EngineEvents } from '../util/events.js';
import { AdjustableSemaphore } from '../util/limit.js';
import { codeOf, type ErrorCode } from '../util/errors.js';
import { ConnectionController, MIN_SEGMENT_BYTES, START_CONNECTIONS, UNMEASURED_SEGMENT_BYTES } from './adaptive.js';
import type { PlannedBlob } from './plan.js';
import type { DownloadPool, WorkerTaskName } from './pool.js';
import type { DownloadFailure, DownloadResult, DownloadTask } from './task.js';

type Done = Extract<DownloadResult, { ok: true }>;

export interface ScheduleOptions {
  cache: Cache;
  client: RegistryClient;
  pool: DownloadPool;
  /** Connections per registry host: the ceiling, or the number with `fixedJobs`. */
  jobs: number;
  /** Exactly `jobs` connections per host, no adaptation. */
  fixedJobs?: boolean;
  hasher: HasherKind;
  events: EngineEvents;
  checkpointBytes?: number;
  /** Blobs of at least twice this size are fetched as parallel ranges of this size; 0 turns it off; undefined: sized from the host's rate. */
  segmentBytes?: number;
  /** Stop dispatching after the first failure (no --keep-going). */
  failFast: boolean;
  /** Stop (Ctrl-C): running downloads checkpoint and return, nothing new starts. */
  signal?: AbortSignal;
  /** Connect, header, low-speed limits and retries per blob; default DEFAULT_NET_LIMITS. */
  limits?: NetLimits;
}

export interface ScheduleReport {
  fetchedBytes: number;
  resumedBytes: number;
  downloaded: number;
  /** digest → why it failed (the last source's code, status and message). */
  failed: Map<string, BlobFailure>;
}

export interface BlobFailure {
  code: ErrorCode;
  message: string;
  status?: number;
}

const cancelledResult: DownloadFailure = { ok: false, code: 'INTERRUPTED', message: 'cancelled', fetched: 0 };

/** A checkpoint is a buffer flush and an LMDB record whose commit is not waited for: cheap enough to take often. */
const CHECKPOINT_BYTES = 2 * 1024 * 1024;
const AUTH_RETRIES = 2;
const BUSY_POLL_MS = 250;
/** How often progress is sampled and each host's connections are reconsidered. */
const TICK_MS = 500;
/** How long a big blob waits for its host's first measured rate (two ticks: the first may find nothing running yet). */
const FIRST_RATE_WAIT_MS = 2 * TICK_MS;
const USER_AGENT = 'ocisave/0.1';
/**
 * Blobs this small (configs, mostly) are fetched on the main thread in one request: the pool's
 * per-blob costs (two thread messages, a partial file, its checkpoint record) outweigh the bytes.
 * Anything unusual about one (a redirect, an error, a wrong digest) sends it to the pool after all.
 */
export const INLINE_BYTES = 64 * 1024;

/**
 * Segments one blob is split into at most. The planner's memory (the ranges, one progress slot and
 * one task each) then depends on this number, never on the size a manifest declares: a layer
 * claiming 2^52 bytes plans 1,024 ranges, not 134 million. Past 1,024 × 32 MiB (32 GiB) the ranges
 * grow instead; 1,024 tasks still queue behind --jobs connections, so more would not go faster.
 *
 * No bound on the size itself below 2^53 (checkSize at the edge): real layers reach tens of GB
 * (model weights), no number separates those from a lie, and a lie costs nothing until bytes
 * arrive. What arrives is bounded by the declared size (a byte more ends the transfer), hashed as
 * it lands, and a full disk stops the save with an error; memory stays flat whatever the size.
 */
export const MAX_SEGMENTS = 1024;

/** [start, end) ranges of `segmentBytes` (more when the blob would need over MAX_SEGMENTS) covering a blob, or none when it is too small to split. */
export function segmentsOf(size: number, segmentBytes: number | undefined): [number, number][] {
  if (!segmentBytes || !Number.isSafeInteger(size) || size < 2 * segmentBytes) return [];
  const step = Math.max(segmentBytes, Math.ceil(size / MAX_SEGMENTS));
  const out: [number, number][] = [];
  for (let start = 0; start < size; start += step) out.push([start, Math.min(size, start + step)]);
  return out;
}

/** A running task's progress slot, read each tick for its host's byte count. */
interface Tracked {
  counter: Float64Array;
  slot: number;
  seen: number;
}

/** One registry host: its connection slots, what moved since the last tick, and its controller. */
interface Host {
  slots: AdjustableSemaphore;
  controller?: ConnectionController;
  /** Int32 the workers add 1 to on a 429, a 503 or a reset from this host. */
  throttle: SharedArrayBuffer;
  throttleSeen: number;
  tasks: Set<Tracked>;
  bytes: number;
  /** Connection-milliseconds held since the last tick, and when `busy` last changed. */
  busyMs: number;
  changedAt: number;
  sampledAt: number;
}

/**
 * The downloads of one save. `add` starts a blob at once (it waits for a connection, largest
 * first); `finish` waits for every blob added; `cancel` makes running downloads checkpoint and
 * return, and keeps waiting ones from starting.
 */
export class Downloads {
  private readonly report: ScheduleReport = { fetchedBytes: 0, resumedBytes: 0, downloaded: 0, failed: new Map() };
  private readonly owner = `${process.pid}-${randomUUID()}`;
  private readonly hosts = new Map<string, Host>();
  private readonly abort = new AbortController();
  private readonly cancelFlag = new SharedArrayBuffer(4);
  private readonly running: Promise<void>[] = [];
  private readonly added = new Set<string>();
  private readonly started = new Set<string>();
  /** Bytes on disk of each blob, one slot per task (the whole blob, or each of its segments). */
  private readonly counters: Float64Array[] = [];
  /** Retries left per blob, shared by all its worker tasks (see DownloadTask.retriesLeft). */
  private readonly retries = new Map<string, SharedArrayBuffer>();
  private total = 0;
  private active = 0;
  private readonly ticker: NodeJS.Timeout;

  constructor(private readonly opts: ScheduleOptions) {
    this.abort.signal.addEventListener('abort', () => Atomics.store(new Int32Array(this.cancelFlag), 0, 1));
    opts.signal?.addEventListener('abort', () => this.cancel());
    this.ticker = setInterval(() => {
      this.emitProgress();
      this.adapt();
    }, TICK_MS);
  }

  /** Queue a missing blob; a digest already added is ignored. */
  add(blob: PlannedBlob): void {
    if (this.added.has(blob.digest)) return;
    this.added.add(blob.digest);
    this.total += blob.size;
    this.running.push(this.one(blob));
  }

  cancel(): void {
    this.abort.abort();
  }

  /** Every blob added has been downloaded, has failed, or was cancelled. */
  async finish(): Promise<ScheduleReport> {
    try {
      // Blobs can still be added while earlier ones run (another image resolved).
      for (let settled = 0; settled < this.running.length; settled = this.running.length) await Promise.all(this.running.slice(settled));
    } finally {
      clearInterval(this.ticker);
    }
    return this.report;
  }

  private emitProgress(): void {
    if (!this.total) return; // nothing to download (yet): no bar
    let done = 0;
    for (const c of this.counters) for (let i = 0; i < c.length; i++) done += c[i]!;
    this.opts.events.emit({ type: 'progress', done, total: this.total, active: this.active });
  }

  private hostOf(name: string): Host {
    let h = this.hosts.get(name);
    if (!h) {
      const { jobs, fixedJobs } = this.opts;
      const controller = fixedJobs ? undefined : new ConnectionController(jobs, START_CONNECTIONS);
      const now = performance.now();
      h = { slots: new AdjustableSemaphore(controller?.limit ?? jobs), controller, throttle: new SharedArrayBuffer(4), throttleSeen: 0, tasks: new Set(), bytes: 0, busyMs: 0, changedAt: now, sampledAt: now };
      this.hosts.set(name, h);
    }
    return h;
  }

  /** Takes a connection slot of the host, counting connection-time for the controller. */
  private async acquire(host: Host, priority: number): Promise<() => void> {
    const release = await host.slots.acquire(priority);
    settleBusy(host, host.slots.busy - 1);
    return () => {
      settleBusy(host, host.slots.busy);
      release();
    };
  }

  /** Each host's bytes and busy time since the last tick, to its controller; the new limit to its slots. */
  private adapt(): void {
    const now = performance.now();
    for (const [name, host] of this.hosts) {
      for (const t of host.tasks) readTracked(host, t);
      settleBusy(host, host.slots.busy);
      const ms = now - host.sampledAt;
      const count = Atomics.load(new Int32Array(host.throttle), 0);
      const sample = { bytes: host.bytes, ms, busy: ms > 0 ? host.busyMs / ms : 0, waiting: host.slots.queued, throttled: count - host.throttleSeen };
      host.throttleSeen = count;
      host.bytes = 0;
      host.busyMs = 0;
      host.sampledAt = now;
      if (!host.controller) continue;
      const before = host.controller.limit;
      const limit = host.controller.sample(sample);
      if (limit === before) continue;
      host.slots.setLimit(limit);
      this.opts.events.emit({ type: 'connections', host: name, limit, reason: sample.throttled > 0 ? 'throttled' : limit > before ? 'throughput grew' : 'no gain' });
    }
  }

  /** How a blob is split: fixed ranges when asked, else sized from its host's rate when its turn comes. */
  private async segmentsFor(blob: PlannedBlob): Promise<[number, number][]> {
    const fixed = this.opts.segmentBytes;
    if (fixed !== undefined) return segmentsOf(blob.size, fixed);
    const source = blob.sources[0];
    if (!source || blob.size < 2 * MIN_SEGMENT_BYTES) return [];
    const host = this.hostOf(source.registry);
    if (!host.controller) return segmentsOf(blob.size, UNMEASURED_SEGMENT_BYTES);
    // An interrupted run's checkpoints are keyed by its ranges: resume them as they were, rather
    // than split by today's rate and fetch again what is on disk.
    if (blob.resumeFrom > 0) return [];
    const earlier = this.opts.cache.segmentRanges(blob.digest);
    if (coversExactly(earlier, blob.size)) return earlier;
    // The first big blobs of a host come before any rate is known: a bounded wait (the smaller
    // blobs run meanwhile) lets them be split by what the link does rather than by a guess.
    for (let waited = 0; host.controller.connectionRate === undefined && waited < FIRST_RATE_WAIT_MS && !this.abort.signal.aborted; waited += TICK_MS / 2) await sleep(TICK_MS / 2);
    // Decide when a connection is free for it: the rate measured by then is the freshest.
    (await host.slots.acquire(blob.size))();
    return segmentsOf(blob.size, host.controller.segmentBytes());
  }

  private async one(blob: PlannedBlob): Promise<void> {
    const { events } = this.opts;
    events.emit({ type: 'blob-queued', digest: blob.digest, size: blob.size, resumeFrom: blob.resumeFrom });
    const segments = blob.size <= INLINE_BYTES ? [] : await this.segmentsFor(blob);
    const progress = new SharedArrayBuffer(8 * Math.max(1, segments.length));
    const counter = new Float64Array(progress);
    this.counters.push(counter);
    const result = segments.length
      ? await this.split(blob, segments, progress)
      : ((blob.size <= INLINE_BYTES && (await this.inline(blob, counter))) || (await this.fromAnySource(blob, (source) => this.dispatch(blob, source, progress, 0, 'default'))));
    if (result.ok) {
      if (!result.alreadyCached) this.report.downloaded++;
      this.report.resumedBytes += result.resumedFrom;
      events.emit({ type: 'blob-done', digest: blob.digest, size: blob.size, fetched: result.fetched });
      return;
    }
    // Cancelled by another blob's failure or by the caller: not a failure of its own.
    if (this.abort.signal.aborted && result.code === 'INTERRUPTED') return;
    const { code, message, status } = result;
    this.report.failed.set(blob.digest, { code, message, ...(status !== undefined && { status }) });
    events.emit({ type: 'blob-failed', digest: blob.digest, error: message, code });
    if (this.opts.failFast) this.cancel();
  }

  private retriesOf(digest: string, limits: NetLimits): SharedArrayBuffer {
    let left = this.retries.get(digest);
    if (!left) {
      this.retries.set(digest, (left = new SharedArrayBuffer(4)));
      new Int32Array(left)[0] = limits.retries;
    }
    return left;
  }

  private async task(blob: PlannedBlob, source: BlobSource, progress: SharedArrayBuffer, slot: number, auth: string | undefined): Promise<DownloadTask> {
    const { cache, client } = this.opts;
    const limits = this.opts.limits ?? client.limits;
    return {
      transport: client.transportOptions,
      cacheDir: cache.dir,
      digest: blob.digest,
      size: blob.size,
      mediaType: blob.mediaType,
      url: `${await client.baseUrl(source.registry)}/v2/${source.repository}/blobs/${blob.digest}`,
      headers: auth ? { authorization: auth, 'user-agent': USER_AGENT } : { 'user-agent': USER_AGENT },
      hasher: this.opts.hasher,
      progress,
      slot,
      checkpointBytes: this.opts.checkpointBytes ?? CHECKPOINT_BYTES,
      owner: this.owner,
      cancel: this.cancelFlag,
      limits,
      retriesLeft: this.retriesOf(blob.digest, limits),
    };
  }

  /** One worker task against one source, holding a connection slot, refreshing the token on 401. */
  private async dispatch(blob: PlannedBlob, source: BlobSource, progress: SharedArrayBuffer, slot: number, name: WorkerTaskName, range?: [number, number]): Promise<DownloadResult> {
    const { client, events, pool } = this.opts;
    for (let authRetries = 0; ; ) {
      if (this.abort.signal.aborted) return cancelledResult;
      const host = this.hostOf(source.registry);
      const release = await this.acquire(host, blob.size);
      const counter = new Float64Array(progress);
      const tracked: Tracked = { counter, slot, seen: counter[slot]! };
      host.tasks.add(tracked);
      let result: DownloadResult;
      try {
        this.active++;
        if (!this.started.has(blob.digest)) {
          this.started.add(blob.digest);
          events.emit({ type: 'blob-start', digest: blob.digest, size: blob.size });
        }
        const auth = await client.authorization(source.registry, source.repository);
        const task = { ...(await this.task(blob, source, progress, slot, auth)), throttle: host.throttle };
        result = await pool.run(range ? { ...task, start: range[0], end: range[1] } : task, name);
      } catch (err) {
        result = this.abort.signal.aborted ? cancelledResult : { ok: false, code: codeOf(err), message: (err as Error).message, fetched: 0 };
      } finally {
        this.active--;
        readTracked(host, tracked);
        host.tasks.delete(tracked);
        release();
      }
      this.report.fetchedBytes += result.fetched;
      if (!result.ok && (result.status === 401 || result.code === 'UNAUTHORIZED') && authRetries++ < AUTH_RETRIES) {
        client.invalidate(source.registry, source.repository);
        events.emit({ type: 'blob-retry', digest: blob.digest, reason: 'token refreshed', attempt: authRetries });
        continue;
      }
      return result;
    }
  }

  /** A small blob from its first source, on this thread; undefined leaves it to the pool. */
  private async inline(blob: PlannedBlob, progress: Float64Array): Promise<Done | undefined> {
    const { cache, client, events } = this.opts;
    const source = blob.sources[0];
    if (!source || blob.resumeFrom > 0) return undefined;
    const host = this.hostOf(source.registry);
    const release = await this.acquire(host, blob.size);
    try {
      if (this.abort.signal.aborted || !cache.tryLock(blob.digest, this.owner)) return undefined;
      this.active++;
      try {
        if (cache.hasBlob(blob.digest)) return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: true, retries: 0 };
        this.started.add(blob.digest);
        events.emit({ type: 'blob-start', digest: blob.digest, size: blob.size });
        const bytes = await client.getSmallBlob(source.registry, source.repository, blob.digest, blob.size).catch(() => undefined);
        this.report.fetchedBytes += bytes?.length ?? 0;
        host.bytes += bytes?.length ?? 0;
        if (!bytes || bytes.length !== blob.size || sha256Bytes(bytes) !== blob.digest) return undefined;
        // The connection is free for the next blob while this one's record waits for its commit.
        release();
        try {
          const verified = cache.tempPath('blob');
          writeFileSync(verified, bytes);
          await cache.commitBlob(blob.digest, verified, blob.size, blob.mediaType);
        } catch {
          return undefined;
        }
        progress[0] = blob.size;
        return { ok: true, fetched: bytes.length, resumedFrom: 0, alreadyCached: false, retries: 0 };
      } finally {
        this.active--;
        cache.unlock(blob.digest, this.owner);
      }
    } finally {
      release();
    }
  }

  /** Try each source in turn; `busy` (another process has the blob) waits for that process. */
  private async fromAnySource(blob: PlannedBlob, attempt: (source: BlobSource) => Promise<DownloadResult>): Promise<DownloadResult> {
    let lastError: DownloadFailure = { ok: false, code: 'NOT_FOUND', message: 'no source repository', fetched: 0 };
    // Sources can grow while this runs (another image with the blob resolved): `for of` sees them.
    for (const source of blob.sources) {
      for (;;) {
        const result = await attempt(source);
        if (result.ok) return result;
        if (result.code === 'BUSY' && !this.abort.signal.aborted) {
          await sleep(BUSY_POLL_MS);
          continue;
        }
        lastError = { ...result, message: `${source.registry}/${source.repository}: ${result.message}` };
        break;
      }
      if (this.abort.signal.aborted) break;
    }
    return lastError;
  }

  /** Ranges in parallel into one partial file, under this process's lock on the blob; then one hash of the whole. */
  private async split(blob: PlannedBlob, segments: [number, number][], progress: SharedArrayBuffer): Promise<DownloadResult> {
    const { cache } = this.opts;
    while (!cache.tryLock(blob.digest, this.owner)) {
      if (this.abort.signal.aborted) return cancelledResult;
      await sleep(BUSY_POLL_MS);
    }
    try {
      if (cache.hasBlob(blob.digest)) return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: true, retries: 0 };
      await (await cache.openPartial(blob.digest, 'a')).close();
      const parts = await Promise.all(segments.map((range, i) => this.fromAnySource(blob, (source) => this.dispatch(blob, source, progress, i, 'segment', range))));
      const failedPart = parts.find((p): p is DownloadFailure => !p.ok);
      if (failedPart) return failedPart;
      const verified = await this.fromAnySource(blob, (source) => this.dispatch(blob, source, progress, 0, 'verify'));
      if (!verified.ok) return verified;
      const done = parts as Done[];
      return { ...verified, resumedFrom: done.reduce((n, p) => n + p.resumedFrom, 0), fetched: done.reduce((n, p) => n + p.fetched, 0) };
    } finally {
      cache.unlock(blob.digest, this.owner);
    }
  }
}

/** Ranges that tile [0, size) with no gap or overlap, and no more of them than MAX_SEGMENTS. */
export function coversExactly(ranges: [number, number][], size: number): boolean {
  if (ranges.length < 2 || ranges.length > MAX_SEGMENTS) return false;
  let at = 0;
  for (const [start, end] of ranges) {
    if (start !== at || end <= start) return false;
    at = end;
  }
  return at === size;
}

/** Adds what a task wrote since the last look to its host (a restart from zero counts nothing). */
function readTracked(host: Host, t: Tracked): void {
  const now = t.counter[t.slot]!;
  if (now > t.seen) host.bytes += now - t.seen;
  t.seen = now;
}

/** Adds the connection-time since the last change, `busy` connections having been held. */
function settleBusy(host: Host, busy: number): void {
  const now = performance.now();
  host.busyMs += Math.max(0, busy) * (now - host.changedAt);
  host.changedAt = now;
}
