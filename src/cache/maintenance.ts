// Cache care: list what the cache holds, total its disk use, verify (re-hash blobs, drop corrupt
// ones, repair what a crash left behind) and prune blobs unused for a while.
// Anything a live download might be touching is guarded by the same per-digest lock downloads
// take (Cache.tryLock): when another live process holds it, the entry is left alone.
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mapLimit } from '../engine/limit.js';
import { hashFile } from '../hash/hasher.js';
import { isAlive, type Cache } from './cache.js';

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** "30d", "12h", "1h30m", "90s", "2w" → milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim().toLowerCase();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * UNITS_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (!s || matched !== s.length) throw new Error(`"${text}" is not a duration: use e.g. 30d, 12h, 1h30m, 45m, 90s, 2w`);
  return total;
}

const HEX_RE = /^[a-f0-9]{64}$/;

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.size : undefined;
  } catch {
    return undefined;
  }
}

async function filesIn(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Run `fn` holding the download lock of `digest`; false (and `fn` not run) when a live process holds it. */
async function withLock(cache: Cache, digest: string, owner: string, fn: () => Promise<void>): Promise<boolean> {
  if (!cache.tryLock(digest, owner)) return false;
  try {
    await fn();
    return true;
  } finally {
    cache.unlock(digest, owner);
  }
}

const ownerId = (what: string) => `${what}-${process.pid}-${Math.random().toString(36).slice(2)}`;

// --- ls / du --------------------------------------------------------------------------

export interface CacheListing {
  dir: string;
  blobs: { digest: string; size: number; mediaType: string; completedAt: number; lastUsedAt: number; present: boolean }[];
  partials: { digest: string; offset: number; fileBytes?: number; hasher: string; updatedAt: number; segmented: boolean }[];
}

export async function listCache(cache: Cache): Promise<CacheListing> {
  const blobs: CacheListing['blobs'] = [];
  for (const { digest, record } of cache.listBlobs()) {
    blobs.push({ digest, size: record.size, mediaType: record.mediaType, completedAt: record.completedAt, lastUsedAt: record.lastUsedAt, present: cache.hasBlob(digest) });
  }
  const segmented = cache.segmentedDigests();
  const partials: CacheListing['partials'] = [];
  const seen = new Set<string>();
  for (const { digest, record } of cache.listPartials()) {
    seen.add(digest);
    partials.push({ digest, offset: record.offset, fileBytes: await fileSize(cache.partialPath(digest)), hasher: record.hasher, updatedAt: record.updatedAt, segmented: segmented.has(digest) });
  }
  for (const digest of segmented) {
    if (seen.has(digest)) continue;
    const fileBytes = await fileSize(cache.partialPath(digest));
    partials.push({ digest, offset: 0, fileBytes, hasher: '', updatedAt: 0, segmented: true });
  }
  blobs.sort((a, b) => b.lastUsedAt - a.lastUsedAt || (a.digest < b.digest ? -1 : 1));
  return { dir: cache.dir, blobs, partials };
}

export interface CacheUsage {
  dir: string;
  blobs: { count: number; bytes: number };
  partials: { count: number; bytes: number };
  tmp: { count: number; bytes: number };
  index: { bytes: number };
  totalBytes: number;
}

async function dirUsage(dir: string): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const name of await filesIn(dir)) {
    const size = await fileSize(join(dir, name));
    if (size === undefined) continue;
    count++;
    bytes += size;
  }
  return { count, bytes };
}

export async function cacheUsage(cache: Cache): Promise<CacheUsage> {
  const [blobs, partials, tmp] = await Promise.all([
    dirUsage(join(cache.dir, 'blobs', 'sha256')),
    dirUsage(join(cache.dir, 'partial')),
    dirUsage(join(cache.dir, 'tmp')),
  ]);
  // index.lmdb is a file (lmdb-js noSubdir default) or a directory, depending on how it was opened.
  let index = (await fileSize(join(cache.dir, 'index.lmdb'))) ?? 0;
  if (!index) index = (await dirUsage(join(cache.dir, 'index.lmdb'))).bytes;
  index += (await fileSize(join(cache.dir, 'index.lmdb-lock'))) ?? 0;
  return { dir: cache.dir, blobs, partials, tmp, index: { bytes: index }, totalBytes: blobs.bytes + partials.bytes + tmp.bytes + index };
}

// --- verify ---------------------------------------------------------------------------

export interface CacheVerifyReport {
  dir: string;
  checked: number;
  bytes: number;
  /** Blobs whose bytes did not match their digest (or recorded size): removed from index and disk. */
  corrupt: string[];
  /** Index records whose file was gone: removed from the index. */
  missing: string[];
  /** Files under blobs/ with no record (a crash between rename and index) that hashed right: indexed again. */
  adopted: string[];
  /** Files under blobs/ that were neither indexed nor correct: removed. */
  removedFiles: string[];
  partials: {
    /** Partial files longer than their checkpoint: cut back to it. */
    truncated: { digest: string; from: number; to: number }[];
    /** Checkpoints that cannot be resumed (file gone or shorter than the checkpoint): dropped. */
    dropped: { digest: string; reason: string }[];
    /** Partial files with no checkpoint at all: removed. */
    removedFiles: string[];
  };
  /** Temp files of processes that no longer run: removed. */
  tmpRemoved: number;
  /** Left alone because a live download holds them. */
  locked: string[];
  seconds: number;
}

export async function verifyCache(cache: Cache, opts: { jobs?: number } = {}): Promise<CacheVerifyReport> {
  const started = Date.now();
  const owner = ownerId('verify');
  const report: CacheVerifyReport = {
    dir: cache.dir,
    checked: 0,
    bytes: 0,
    corrupt: [],
    missing: [],
    adopted: [],
    removedFiles: [],
    partials: { truncated: [], dropped: [], removedFiles: [] },
    tmpRemoved: 0,
    locked: [],
    seconds: 0,
  };
  const jobs = opts.jobs ?? 4;

  // Indexed blobs: the file must be there, of the recorded size, and hash to its name.
  const records = [...cache.listBlobs()];
  await mapLimit(records, jobs, async ({ digest, record }) => {
    const path = cache.blobPath(digest);
    const size = await fileSize(path);
    let bad: 'missing' | 'corrupt' | undefined;
    if (size === undefined) bad = 'missing';
    else {
      const got = await hashFile(path);
      report.checked++;
      report.bytes += got.size;
      if (got.digest !== digest || got.size !== record.size) bad = 'corrupt';
    }
    if (!bad) return;
    const done = await withLock(cache, digest, owner, () => cache.forgetBlob(digest));
    if (!done) report.locked.push(digest);
    else report[bad].push(digest);
  });

  // Files with no record: a crash after the rename into blobs/ but before the index write.
  const indexed = new Set(records.map((r) => r.digest));
  const orphans = (await filesIn(join(cache.dir, 'blobs', 'sha256'))).filter((n) => !indexed.has(`sha256:${n}`));
  await mapLimit(orphans, jobs, async (name) => {
    const path = join(cache.dir, 'blobs', 'sha256', name);
    if (!HEX_RE.test(name)) {
      await rm(path, { force: true });
      report.removedFiles.push(name);
      return;
    }
    const digest = `sha256:${name}`;
    if (cache.blobRecord(digest)) return; // indexed meanwhile by a live download
    const done = await withLock(cache, digest, owner, async () => {
      const got = await hashFile(path);
      report.checked++;
      report.bytes += got.size;
      if (got.digest === digest) {
        await cache.commitBlob(digest, path, got.size, 'application/octet-stream');
        report.adopted.push(digest);
      } else {
        await rm(path, { force: true });
        report.removedFiles.push(name);
      }
    });
    if (!done) report.locked.push(digest);
  });

  // Partial downloads: the checkpoint and the file must agree, else the next run cannot resume.
  const segmented = cache.segmentedDigests();
  const checkpointed = new Set<string>();
  for (const { digest, record } of [...cache.listPartials()]) {
    checkpointed.add(digest);
    const path = cache.partialPath(digest);
    const done = await withLock(cache, digest, owner, async () => {
      const size = await fileSize(path);
      if (cache.hasBlob(digest)) {
        await cache.clearPartial(digest);
        report.partials.dropped.push({ digest, reason: 'the blob is complete' });
      } else if (size === undefined) {
        await cache.clearPartial(digest);
        report.partials.dropped.push({ digest, reason: 'partial file missing' });
      } else if (size < record.offset) {
        await cache.clearPartial(digest);
        report.partials.dropped.push({ digest, reason: `file holds ${size} bytes, checkpoint says ${record.offset}` });
      } else if (size > record.offset && !segmented.has(digest)) {
        // Bytes written after the last checkpoint are not covered by the saved hasher state.
        const fh = await open(path, 'r+');
        try {
          await fh.truncate(record.offset);
        } finally {
          await fh.close();
        }
        report.partials.truncated.push({ digest, from: size, to: record.offset });
      }
    });
    if (!done) report.locked.push(digest);
  }
  for (const name of await filesIn(join(cache.dir, 'partial'))) {
    const digest = `sha256:${name}`;
    if (checkpointed.has(digest) || segmented.has(digest)) continue;
    const path = join(cache.dir, 'partial', name);
    if (!HEX_RE.test(name)) {
      await rm(path, { force: true });
      report.partials.removedFiles.push(name);
      continue;
    }
    // A download that has not checkpointed yet holds the lock: then the file is in use.
    const done = await withLock(cache, digest, owner, async () => {
      if (cache.partial(digest)) return;
      await rm(path, { force: true });
      report.partials.removedFiles.push(digest);
    });
    if (!done) report.locked.push(digest);
  }

  // Temp files are named LABEL.PID.TIME.RANDOM: those of dead processes are litter.
  for (const name of await filesIn(join(cache.dir, 'tmp'))) {
    const m = /\.(\d+)\.(\d+)\.[a-z0-9]+$/.exec(name);
    const pid = m ? Number(m[1]) : NaN;
    if (pid === process.pid || (Number.isInteger(pid) && isAlive(pid))) continue;
    await rm(join(cache.dir, 'tmp', name), { force: true });
    report.tmpRemoved++;
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

// --- prune ----------------------------------------------------------------------------

export interface PruneReport {
  dir: string;
  dryRun: boolean;
  olderThanMs: number;
  removed: { digest: string; size: number; lastUsedAt: number }[];
  removedBytes: number;
  /** Stale partial downloads removed. */
  partialsRemoved: string[];
  /** Old enough, but a live download holds them. */
  locked: string[];
  kept: { blobs: number; bytes: number };
}

/** Remove blobs not used for `olderThanMs` (and partial downloads not touched for as long). */
export async function pruneCache(cache: Cache, opts: { olderThanMs: number; dryRun?: boolean; now?: number }): Promise<PruneReport> {
  const cutoff = (opts.now ?? Date.now()) - opts.olderThanMs;
  const owner = ownerId('prune');
  const report: PruneReport = { dir: cache.dir, dryRun: !!opts.dryRun, olderThanMs: opts.olderThanMs, removed: [], removedBytes: 0, partialsRemoved: [], locked: [], kept: { blobs: 0, bytes: 0 } };
  for (const { digest, record } of [...cache.listBlobs()]) {
    if (record.lastUsedAt >= cutoff) {
      report.kept.blobs++;
      report.kept.bytes += record.size;
      continue;
    }
    const done = opts.dryRun
      ? true
      : await withLock(cache, digest, owner, async () => {
          // Used again since the listing (another process's save): keep it.
          const now = cache.blobRecord(digest);
          if (now && now.lastUsedAt >= cutoff) throw new StillUsed();
          await cache.forgetBlob(digest);
        }).catch((err) => {
          if (err instanceof StillUsed) return 'kept' as const;
          throw err;
        });
    if (done === 'kept') {
      report.kept.blobs++;
      report.kept.bytes += record.size;
    } else if (!done) {
      report.locked.push(digest);
      report.kept.blobs++;
      report.kept.bytes += record.size;
    } else {
      report.removed.push({ digest, size: record.size, lastUsedAt: record.lastUsedAt });
      report.removedBytes += record.size;
    }
  }
  for (const { digest, record } of [...cache.listPartials()]) {
    if (record.updatedAt >= cutoff) continue;
    const done = opts.dryRun ? true : await withLock(cache, digest, owner, () => cache.clearPartial(digest));
    if (done) report.partialsRemoved.push(digest);
    else report.locked.push(digest);
  }
  return report;
}

class StillUsed extends Error {}
