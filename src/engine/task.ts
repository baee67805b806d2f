// The contract between the scheduler (main thread) and the download workers.
import type { HasherKind } from '../hash/hasher.js';
import type { TransportOptions } from '../registry/transport.js';
import type { NetLimits } from '../registry/timeouts.js';
import type { ErrorCode } from '../util/errors.js';

export interface DownloadTask {
  cacheDir: string;
  digest: string;
  size: number;
  mediaType: string;
  /** How to connect (TLS material, proxy): the worker builds its dispatcher from it. */
  transport: TransportOptions;
  /** The blob URL on the registry. */
  url: string;
  /** Sent to the registry host only, never to a redirect target on another host. */
  headers: Record<string, string>;
  hasher: HasherKind;
  /** Progress slots: the worker writes bytes-on-disk for this blob into slot `slot`. */
  progress: SharedArrayBuffer;
  slot: number;
  /** Fsync and checkpoint the partial file every this many bytes. */
  checkpointBytes: number;
  /** Identifies this process's claim on the blob's download lock. */
  owner: string;
  /**
   * Cooperative cancellation: an Int32 set to 1 by the scheduler. Workers stop at the next chunk,
   * checkpoint and return; they are never terminated mid-write (a thread killed inside an LMDB
   * write transaction would leave the environment's lock held for the whole process).
   */
  cancel: SharedArrayBuffer;
  /** Connect, header and low-speed limits (the --connect-timeout, --header-timeout, --speed-* flags). */
  limits: NetLimits;
  /**
   * Retries left for this blob: an Int32 shared by every task of the blob (its segments, its
   * sources), set to --retries by the scheduler; a worker retries only after taking one.
   */
  retriesLeft: SharedArrayBuffer;
  /** An Int32 of the host's, added 1 on each 429, 503 or reset: the scheduler lowers its connections. */
  throttle?: SharedArrayBuffer;
}

/** One range [start, end) of a segmented download; the scheduler holds the blob's lock. */
export interface SegmentTask extends DownloadTask {
  start: number;
  end: number;
}

/**
 * A failed task, a plain object across the thread boundary: `code` is the vocabulary of
 * src/util/errors.ts (UNAUTHORIZED, DENIED, BUSY, DIGEST_MISMATCH, SIZE_MISMATCH, TIMEOUT,
 * UNREACHABLE, INTERRUPTED, an errno such as ENOSPC, or the registry's own BLOB_UNKNOWN...),
 * `status` the registry's HTTP status when its answer was the failure.
 */
export interface DownloadFailure {
  ok: false;
  code: ErrorCode;
  message: string;
  status?: number;
  fetched: number;
}

export type DownloadResult = { ok: true; fetched: number; resumedFrom: number; alreadyCached: boolean; retries: number } | DownloadFailure;

/** What a worker thread posts once its module (and lmdb's native addon) has loaded. */
export const WORKER_LOADED = 'ocisave:worker-loaded';
