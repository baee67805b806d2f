// Piscina task: download one blob into the cache.
// Writes to partial/<hex>, hashes while streaming, checkpoints (offset + hasher state) in LMDB so a
// killed process resumes with `Range: bytes=N-`, verifies size and digest, then renames into place.
// A blob whose digest does not match is discarded and never enters the cache.
// Checkpoints do not fsync the partial file (that cost ~44 ms per 8 MiB here): a killed process
// loses nothing, as the page cache keeps the data; after a power cut, bytes that never reached the
// disk fail the final digest check and the blob is fetched again from zero — slower, never wrong.
import { lstat } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import type { Dispatcher } from 'undici';
import { sharedTransport } from '../src/registry/transport.js';
import { explainConnectError } from '../src/registry/net-errors.js';
import { MAX_ERROR_BODY, parseDistributionError } from '../src/registry/errors.js';
import { OcisaveError, type ErrorCode } from '../src/util/errors.js';
import { Cache, type PartialFile } from '../src/cache/cache.js';
import { writeFully } from '../src/cache/write-error.js';
import { resumeHasher, createHasher, hashFile } from '../src/hash/hasher.js';
import { backoffMs, isRetryableError, isRetryableStatus, isTimeoutError, sleep, TIMEOUT_RETRIES } from '../src/registry/retry.js';
import { requestTimeouts, SpeedWatch, type NetLimits } from '../src/registry/timeouts.js';
import { WORKER_LOADED, type DownloadFailure, type DownloadResult, type DownloadTask, type SegmentTask } from '../src/engine/task.js';

// Piscina loads this module with a synchronous require(); once that has returned (the next turn
// of the event loop), the pool may terminate this thread safely.
setImmediate(() => parentPort?.postMessage(WORKER_LOADED));

const retryCounters = new WeakMap<SharedArrayBuffer, Int32Array>();
/** Takes one of the blob's retries (shared by its segments and sources); false when none is left. */
function takeRetry(task: DownloadTask): boolean {
  let left = retryCounters.get(task.retriesLeft);
  if (!left) retryCounters.set(task.retriesLeft, (left = new Int32Array(task.retriesLeft)));
  return Atomics.sub(left, 0, 1) > 0;
}

const caches = new Map<string, Cache>();
function cacheAt(dir: string): Cache {
  let c = caches.get(dir);
  if (!c) caches.set(dir, (c = Cache.open(dir)));
  return c;
}

const MAX_REDIRECTS = 5;
/** A digest mismatch is fetched again once; twice means the source is bad, not the wire. */
const MAX_MISMATCHES = 2;

/** Network chunks (~64 KiB) are coalesced into writes of about this size. */
const WRITE_BYTES = 1 << 20;

/**
 * Appends chunks at increasing positions of a file, in few large writes, with one write in flight
 * while the next chunks arrive (the disk and the network work at the same time).
 */
class BufferedFile {
  private chunks: Buffer[] = [];
  private pending = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private queued = 0;
  constructor(
    private readonly fh: PartialFile,
    public written: number,
    private readonly path: string,
  ) {}

  /** Position after every byte added, written or not. */
  get end(): number {
    return this.written + this.queued + this.pending;
  }

  /** A promise only when the caller must wait (the previous write is still in flight). */
  add(buf: Buffer): Promise<void> | undefined {
    this.chunks.push(buf);
    this.pending += buf.length;
    return this.pending >= WRITE_BYTES ? this.startWrite() : undefined;
  }

  /** Issue the buffered chunks as one write, after the previous one finished. */
  private async startWrite(): Promise<void> {
    await this.inFlight;
    if (!this.pending) return;
    const chunks = this.chunks;
    const n = this.pending;
    const at = this.written;
    this.chunks = [];
    this.pending = 0;
    this.queued = n;
    this.inFlight = writeFully(this.fh, chunks, at, this.path).then(() => {
      this.written += n;
      this.queued = 0;
    });
    // A failure surfaces at the next add() or flush().
    this.inFlight.catch(() => undefined);
  }

  /** Everything added is written. */
  async flush(): Promise<void> {
    await this.startWrite();
    await this.inFlight;
  }

  /** Drop what is not written yet and continue from `position`. */
  async reset(position: number): Promise<void> {
    await this.inFlight.catch(() => undefined);
    this.chunks = [];
    this.pending = 0;
    this.queued = 0;
    this.written = position;
  }
}

const cancelFlags = new WeakMap<SharedArrayBuffer, Int32Array>();
function cancelled(task: DownloadTask): boolean {
  let flag = cancelFlags.get(task.cancel);
  if (!flag) cancelFlags.set(task.cancel, (flag = new Int32Array(task.cancel)));
  return Atomics.load(flag, 0) === 1;
}

const throttleCounters = new WeakMap<SharedArrayBuffer, Int32Array>();
/** Tells the scheduler the host pushed back (429, 503, a reset): it runs fewer connections there. */
function signalThrottle(task: DownloadTask): void {
  if (!task.throttle) return;
  let n = throttleCounters.get(task.throttle);
  if (!n) throttleCounters.set(task.throttle, (n = new Int32Array(task.throttle)));
  Atomics.add(n, 0, 1);
}

/** A connection the server (or something on the way) cut: ECONNRESET, or undici's "other side closed". */
function isReset(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE';
}

class TransferError extends OcisaveError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly retryable = false,
    readonly retryAfter?: string,
    readonly status?: number,
  ) {
    super(code, message);
  }
}

/** The result for a transfer that failed with `err`: its code, or TIMEOUT/UNREACHABLE for a network error past its retries. */
function failedWith(err: unknown, fetched: number): DownloadFailure {
  const status = err instanceof TransferError ? err.status : undefined;
  const code = err instanceof OcisaveError ? err.code : isTimeoutError(err) ? 'TIMEOUT' : isRetryableError(err) ? 'UNREACHABLE' : 'UNKNOWN';
  return { ok: false, code, message: String((err as Error)?.message ?? err), ...(status !== undefined && { status }), fetched };
}

export default async function download(task: DownloadTask): Promise<DownloadResult> {
  const cache = cacheAt(task.cacheDir);
  if (cache.hasBlob(task.digest)) return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: true, retries: 0 };
  if (!cache.tryLock(task.digest, task.owner)) {
    return { ok: false, code: 'BUSY', message: 'another process is downloading this blob', fetched: 0 };
  }
  try {
    // Another process may have finished it between our check and the lock.
    if (cache.hasBlob(task.digest)) return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: true, retries: 0 };
    return await transfer(cache, task);
  } finally {
    cache.unlock(task.digest, task.owner);
  }
}

async function transfer(cache: Cache, task: DownloadTask): Promise<DownloadResult> {
  const progress = new Float64Array(task.progress);
  const path = cache.partialPath(task.digest);
  let fetched = 0;
  let retries = 0;
  let mismatches = 0;
  let timeouts = 0;
  const resumedFrom = await checkpointedOffset(cache, task, path);
  const fh: PartialFile = await cache.openPartial(task.digest, resumedFrom > 0 ? 'r+' : 'w');
  const file = new BufferedFile(fh, resumedFrom, path);
  try {
    // 'w' has emptied the file; a resumed one loses whatever lies past its checkpoint.
    if (resumedFrom > 0) await fh.truncate(resumedFrom);
    let hasher = await resumeHasher(task.hasher, path, resumedFrom, cache.partial(task.digest)?.hasherState);
    let sinceCheckpoint = 0;
    let saved: Promise<unknown> = Promise.resolve();

    // The hasher has seen exactly the bytes up to file.end; flushing first makes the record true.
    // The stream does not wait for LMDB's commit (and its fsync): `saved` is awaited before returning.
    const checkpoint = async () => {
      await file.flush();
      saved = cache.savePartial(task.digest, { offset: file.written, hasher: hasher.kind, hasherState: hasher.save(), updatedAt: Date.now() });
      sinceCheckpoint = 0;
    };
    const restart = async () => {
      await file.reset(0);
      sinceCheckpoint = 0;
      await fh.truncate(0);
      await cache.savePartial(task.digest, { offset: 0, hasher: task.hasher, updatedAt: Date.now() });
      hasher = await createHasher(task.hasher);
    };

    for (let attempt = 1; ; attempt++) {
      try {
        if (file.end < task.size) {
          await receive(task, file.end, undefined, {
            start: (restartFromZero) => (restartFromZero ? restart() : undefined),
            data: (buf) => {
              if (cancelled(task)) throw new TransferError('INTERRUPTED', 'cancelled');
              if (file.end + buf.length > task.size) throw new TransferError('SIZE_MISMATCH', `more bytes than the ${task.size} the manifest says`);
              hasher.update(buf);
              const writing = file.add(buf);
              fetched += buf.length;
              sinceCheckpoint += buf.length;
              progress[task.slot] = file.end;
              if (sinceCheckpoint >= task.checkpointBytes) return writing ? writing.then(checkpoint) : checkpoint();
              return writing;
            },
          });
        }
        if (file.end < task.size) throw new TransferError('UNREACHABLE', `connection ended at ${file.end} of ${task.size} bytes`, true);
        await file.flush();
        const digest = hasher.digest();
        if (digest !== task.digest) {
          mismatches++;
          if (mismatches >= MAX_MISMATCHES) {
            await fh.close();
            await cache.clearPartial(task.digest);
            return { ok: false, code: 'DIGEST_MISMATCH', message: `content does not match its digest (got ${digest}); discarded`, fetched };
          }
          await restart();
          retries++;
          continue;
        }
        await fh.close();
        await saved;
        await cache.commitBlob(task.digest, path, task.size, task.mediaType);
        return { ok: true, fetched, resumedFrom, alreadyCached: false, retries };
      } catch (err) {
        const e = err instanceof TransferError ? err : undefined;
        const retryable = e ? e.retryable : isRetryableError(err);
        if (!e && !retryable) throw err;
        // Two timeouts in a row: the registry is not answering (see TIMEOUT_RETRIES).
        if (!retryable || (isTimeoutError(err) && ++timeouts > TIMEOUT_RETRIES) || !takeRetry(task)) {
          await checkpoint().catch(() => undefined);
          await saved.catch(() => undefined);
          await fh.close().catch(() => undefined);
          return failedWith(err, fetched);
        }
        // Keep what arrived: the next attempt continues from here with a Range request.
        await checkpoint();
        retries++;
        await sleep(backoffMs(attempt, e?.retryAfter));
      }
    }
  } catch (err) {
    await fh.close().catch(() => undefined);
    return failedWith(err, fetched);
  }
}

/** The offset a previous run checkpointed, if the partial file still holds that many bytes. */
async function checkpointedOffset(cache: Cache, task: DownloadTask, path: string): Promise<number> {
  const rec = cache.partial(task.digest);
  if (!rec || rec.offset <= 0 || rec.offset > task.size) return 0;
  try {
    const st = await lstat(path); // a link planted in partial/ is not our file: start afresh
    if (!st.isFile() || st.size < rec.offset) return 0;
  } catch {
    return 0;
  }
  // A wasm checkpoint can only be continued by the wasm hasher; the node hasher re-reads the file.
  if (rec.hasher === 'wasm' && task.hasher === 'wasm' && !rec.hasherState) return 0;
  return rec.offset;
}

/**
 * Piscina task `segment`: fetch bytes [start, end) of a blob into its partial file, checkpointing
 * progress per segment. No hashing here: `verify` hashes the whole file once every segment is in.
 */
export async function segment(task: SegmentTask): Promise<DownloadResult> {
  const cache = cacheAt(task.cacheDir);
  const progress = new Float64Array(task.progress);
  const start = Math.max(task.start, cache.segment(task.digest, task.start, task.end)?.offset ?? task.start);
  let fetched = 0;
  let retries = 0;
  let timeouts = 0;
  const fh = await cache.openPartial(task.digest, 'r+');
  const file = new BufferedFile(fh, start, cache.partialPath(task.digest));
  let sinceCheckpoint = 0;
  let saved: Promise<unknown> = Promise.resolve();
  const checkpoint = async () => {
    await file.flush();
    saved = cache.saveSegment(task.digest, task.start, task.end, { offset: file.written, updatedAt: Date.now() });
    sinceCheckpoint = 0;
  };
  try {
    for (let attempt = 1; file.end < task.end; attempt++) {
      try {
        await receive(task, file.end, task.end, {
          start: (restartFromZero) => {
            if (restartFromZero) throw new TransferError('UNSUPPORTED', 'the registry ignores Range requests; segmented download impossible');
          },
          data: (buf) => {
            if (cancelled(task)) throw new TransferError('INTERRUPTED', 'cancelled');
            if (file.end + buf.length > task.end) throw new TransferError('BAD_RESPONSE', `more bytes than the range ${task.start}-${task.end} asked for`);
            const writing = file.add(buf);
            fetched += buf.length;
            sinceCheckpoint += buf.length;
            progress[task.slot] = file.end - task.start;
            if (sinceCheckpoint >= task.checkpointBytes) return writing ? writing.then(checkpoint) : checkpoint();
            return writing;
          },
        });
        if (file.end < task.end) throw new TransferError('UNREACHABLE', `connection ended at ${file.end} of ${task.end}`, true);
      } catch (err) {
        const e = err instanceof TransferError ? err : undefined;
        const retryable = e ? e.retryable : isRetryableError(err);
        await checkpoint().catch(() => undefined);
        if (!retryable || (isTimeoutError(err) && ++timeouts > TIMEOUT_RETRIES) || !takeRetry(task)) {
          await saved.catch(() => undefined);
          return failedWith(err, fetched);
        }
        retries++;
        await sleep(backoffMs(attempt, e?.retryAfter));
      }
    }
    await checkpoint();
    await saved;
    return { ok: true, fetched, resumedFrom: start - task.start, alreadyCached: false, retries };
  } finally {
    await fh.close();
  }
}

/** Piscina task `verify`: hash a segmented download's partial file and commit it if it matches. */
export async function verify(task: DownloadTask): Promise<DownloadResult> {
  const cache = cacheAt(task.cacheDir);
  const path = cache.partialPath(task.digest);
  const { digest, size } = await hashFile(path, task.hasher);
  if (digest !== task.digest || size !== task.size) {
    await cache.clearPartial(task.digest);
    return { ok: false, code: size !== task.size ? 'SIZE_MISMATCH' : 'DIGEST_MISMATCH', message: `content does not match its digest (got ${digest}, ${size} bytes); discarded`, fetched: 0 };
  }
  await cache.commitBlob(task.digest, path, task.size, task.mediaType);
  return { ok: true, fetched: 0, resumedFrom: 0, alreadyCached: false, retries: 0 };
}

type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Where a blob GET's body goes. A returned promise holds the connection paused until it settles; a throw ends the transfer. */
interface BodySink {
  /** The body starts at the offset asked for, or (`restartFromZero`: the registry ignored Range) at byte 0. */
  start(restartFromZero: boolean): Promise<void> | void;
  data(chunk: Buffer): Promise<void> | void;
}

/**
 * GET the blob from `offset` (up to `end`, exclusive, when given) into `sink`, following redirects
 * by hand so Authorization never leaves the registry host. The body is taken from undici's dispatch
 * callbacks rather than a Readable: ~10% less CPU per byte, which on a busy machine is throughput.
 */
async function receive(task: DownloadTask, offset: number, end: number | undefined, sink: BodySink): Promise<void> {
  if (cancelled(task)) throw new TransferError('INTERRUPTED', 'cancelled');
  let url = task.url;
  const registryHost = new URL(task.url).host;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = new URL(url).host === registryHost ? { ...task.headers } : {};
    if (offset > 0 || end !== undefined) headers.range = `bytes=${offset}-${end !== undefined ? end - 1 : ''}`;
    const answer = await exchange(task, url, headers, task.limits, (code, h) => {
      if (code === 206) {
        const range = /^bytes (\d+)-/.exec(String(h['content-range'] ?? ''));
        if (!range || Number(range[1]) !== offset) throw new TransferError('BAD_RESPONSE', `server answered a range starting elsewhere than ${offset}`, true);
        return { restartFromZero: false };
      }
      if (code === 200) return { restartFromZero: offset > 0 || (end !== undefined && end < task.size) };
      return undefined;
    }, sink).catch((err: unknown) => {
      // A certificate, a client certificate or a proxy problem gets its one line (retried as the
      // raw error would be); our own sink's errors and the rest go on as they are.
      if (err instanceof TransferError) throw err;
      if (isReset(err)) signalThrottle(task);
      const u = new URL(url);
      const explained = explainConnectError(err, u.host, sharedTransport(task.transport).proxyOf(u));
      throw explained ? new TransferError('UNREACHABLE', explained, isRetryableError(err)) : err;
    });
    const { status } = answer;
    if (status === 200 || status === 206) return;
    const header = (name: string) => [answer.headers[name]].flat()[0];
    if ([301, 302, 303, 307, 308].includes(status)) {
      const location = header('location');
      if (typeof location !== 'string') throw new TransferError('BAD_RESPONSE', `redirect ${status} without a Location`);
      url = new URL(location, url).toString();
      continue;
    }
    // The registry's own code when its error body names one (BLOB_UNKNOWN, NAME_UNKNOWN, DENIED...).
    const named = parseDistributionError(answer.body).code;
    const fail = (code: ErrorCode, message: string, retryable = false) => new TransferError(named ?? code, message, retryable, header('retry-after'), status);
    if (status === 416 && offset > 0) throw fail('BAD_RESPONSE', 'range not satisfiable', true);
    if (status === 401) throw fail('UNAUTHORIZED', 'the registry asked for authentication again (token expired?)');
    if (status === 403) throw fail('DENIED', 'access denied');
    if (status === 404) throw fail('NOT_FOUND', 'blob not found in the repository');
    if (status === 429 || status === 503) signalThrottle(task);
    if (isRetryableStatus(status)) throw fail(status === 429 ? 'TOOMANYREQUESTS' : 'UNKNOWN', `HTTP ${status}`, true);
    throw fail('UNKNOWN', `HTTP ${status}`);
  }
  throw new TransferError('BAD_RESPONSE', `more than ${MAX_REDIRECTS} redirects`);
}

/**
 * One HTTP exchange. `accept` looks at the status and headers: a body it accepts goes to `sink`
 * (paused while the sink's promise runs); any other body is read and dropped, so the connection
 * stays reusable. Resolves with the status and headers once the body ended and the sink finished
 * with it.
 */
function exchange(
  task: DownloadTask,
  url: string,
  headers: Record<string, string>,
  limits: NetLimits,
  accept: (status: number, headers: ResponseHeaders) => { restartFromZero: boolean } | undefined,
  sink: BodySink,
): Promise<{ status: number; headers: ResponseHeaders; body: Buffer }> {
  const { origin, pathname, search } = new URL(url);
  return new Promise((resolve, reject) => {
    let status = 0;
    let answered: ResponseHeaders = {};
    // The start of a body not accepted (an error page), for the registry's error code; the rest is dropped.
    const unaccepted: Buffer[] = [];
    let unacceptedBytes = 0;
    let piping = false;
    let failed = false;
    let watch: SpeedWatch | undefined;
    // Time our own writes hold the connection paused is not the server's slowness.
    const hold = (controller: Dispatcher.DispatchController, work: Promise<void> | void) => {
      if (!work) return;
      controller.pause();
      watch?.pause();
      work.then(
        () => {
          watch?.resume();
          controller.resume();
        },
        (err) => controller.abort(err as Error),
      );
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart(controller, statusCode, resHeaders) {
        status = statusCode;
        // Every body, error pages included: a 1 byte/s answer of any kind is dropped.
        watch = new SpeedWatch(limits, (err) => {
          failed = true;
          controller.abort(err);
        });
        answered = resHeaders as ResponseHeaders;
        try {
          const accepted = accept(statusCode, answered);
          if (!accepted) return;
          piping = true;
          hold(controller, sink.start(accepted.restartFromZero));
        } catch (err) {
          controller.abort(err as Error);
        }
      },
      onResponseData(controller, chunk) {
        watch?.add(chunk.length);
        if (!piping && unacceptedBytes < MAX_ERROR_BODY) {
          const kept = Buffer.from(chunk.subarray(0, MAX_ERROR_BODY - unacceptedBytes));
          unaccepted.push(kept);
          unacceptedBytes += kept.length;
        }
        if (!piping || failed) return;
        try {
          hold(controller, sink.data(chunk));
        } catch (err) {
          failed = true;
          controller.abort(err as Error);
        }
      },
      onResponseEnd() {
        watch?.stop();
        resolve({ status, headers: answered, body: Buffer.concat(unaccepted) });
      },
      onResponseError(_controller, err) {
        watch?.stop();
        reject(err);
      },
    };
    // This thread's connections, one transport per distinct settings (connect timeout included).
    sharedTransport(task.transport).dispatch({ origin, path: pathname + search, method: 'GET', headers, ...requestTimeouts(limits) }, handler);
  });
}
