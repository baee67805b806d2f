// Cache care: list what the cache holds, total its disk use, verify (re-hash blobs, drop corrupt
// ones, repair what a crash left behind) and prune blobs unused for a while.
// Anything a live download might be touching is guarded by the same per-digest lock downloads
// take (Cache.tryLock): when another live process holds it, the entry is left alone.
// Every file is reached through src/fs/contained.ts: nothing is read, cut or removed through a
// link, so a `partial/` or `tmp/` made a link to another directory never costs that directory a file.
import { mapLimit } from '../util/limit.js';
import { isUnsafePath, listInside, openRegular, regularSize, removeInside } from '../fs/contained.js';
import { isAlive, type Cache } from './cache.js';


const HEX_RE = /^[a-f0-9]{64}$/;
const partialName = (digest: string) => `partial/${digest.slice('sha256:'.length)}`;

/** Size of a regular file under the cache directory (`rel` like `partial/<hex>`); undefined for anything else. */
function fileSize(cache: Cache, rel: string): Promise<number | undefined> {
  return regularSize(cache.dir, rel);
}

/** Regular files in one of the cache's directories; none when it is a link (never listed through). */
async function filesIn(cache: Cache, rel: string): Promise<string[]> {
  try {
    return (await listInside(cache.dir, rel)).files;
  } catch (err) {
    if (isUnsafePath(err)) return [];
    throw err;
  }
}

/** Links and other non-files in a cache directory: never followed, removed (the link itself) by verify. */
async function strayIn(cache: Cache, rel: string): Promise<string[]> {
  try {
    return (await listInside(cache.dir, rel)).other;
  } catch (err) {
    if (isUnsafePath(err)) return [];
    throw err;
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
    // Present: a regular file of the recorded size (a changed identity is re-hashed on next use, not missing).
    const present = cache.hasBlob(digest) || (await fileSize(cache, cache.blobName(digest))) === record.size;
    blobs.push({ digest, size: record.size, mediaType: record.mediaType, completedAt: record.completedAt, lastUsedAt: record.lastUsedAt, present });
  }
  const segmented = cache.segmentedDigests();
  const partials: CacheListing['partials'] = [];
  const seen = new Set<string>();
  for (const { digest, record } of cache.listPartials()) {
    seen.add(digest);
    partials.push({ digest, offset: record.offset, fileBytes: await fileSize(cache, partialName(digest)), hasher: record.hasher, updatedAt: record.updatedAt, segmented: segmented.has(digest) });
  }
  for (const digest of segmented) {
    if (seen.has(digest)) continue;
    const fileBytes = await fileSize(cache, partialName(digest));
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

async function dirUsage(cache: Cache, rel: string): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  for (const name of await filesIn(cache, rel)) {
    const size = await fileSize(cache, `${rel}/${name}`);
    if (size === undefined) continue;
    count++;
    bytes += size;
  }
  return { count, bytes };
}

export async function cacheUsage(cache: Cache): Promise<CacheUsage> {
  const [blobs, partials, tmp] = await Promise.all([
    dirUsage(cache, 'blobs/sha256'),
    dirUsage(cache, 'partial'),
    dirUsage(cache, 'tmp'),
  ]);
  // index.lmdb is a file (lmdb-js noSubdir default) or a directory, depending on how it was opened.
  let index = (await fileSize(cache, 'index.lmdb')) ?? 0;
  if (!index) index = (await dirUsage(cache, 'index.lmdb')).bytes;
  index += (await fileSize(cache, 'index.lmdb-lock')) ?? 0;
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
  /** Cache directories (partial, tmp, blobs/sha256) that were symbolic links: the link removed, its target untouched, an empty directory made. */
  linksReplaced: string[];
  /** Links and other non-files found inside the cache's directories: the entry itself removed. */
  strayLinks: string[];
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
    linksReplaced: [...cache.replacedLinks],
    strayLinks: [],
    locked: [],
    seconds: 0,
  };
  const jobs = opts.jobs ?? 4;

  // Indexed blobs: the file must be there, a regular file of the recorded size, and hash to its name.
  const records = [...cache.listBlobs()];
  await mapLimit(records, jobs, async ({ digest }) => {
    const got = await cache.rehashBlob(digest);
    if (got.state !== 'missing') {
      report.checked++;
      report.bytes += got.bytes;
    }
    if (got.state === 'ok') return;
    const bad = got.state;
    const done = await withLock(cache, digest, owner, () => cache.forgetBlob(digest));
    if (!done) report.locked.push(digest);
    else report[bad].push(digest);
  });

  // Links (and FIFOs, devices) in the cache's directories are never ours: removed, the link itself.
  for (const dir of ['blobs/sha256', 'partial', 'tmp']) {
    for (const name of await strayIn(cache, dir)) {
      await removeInside(cache.dir, `${dir}/${name}`);
      report.strayLinks.push(`${dir}/${name}`);
    }
  }

  // Files with no record: a crash after the rename into blobs/ but before the index write.
  const indexed = new Set(records.map((r) => r.digest));
  const orphans = (await filesIn(cache, 'blobs/sha256')).filter((n) => !indexed.has(`sha256:${n}`));
  await mapLimit(orphans, jobs, async (name) => {
    const rel = `blobs/sha256/${name}`;
    if (!HEX_RE.test(name)) {
      await removeInside(cache.dir, rel);
      report.removedFiles.push(name);
      return;
    }
    const digest = `sha256:${name}`;
    if (cache.blobRecord(digest)) return; // indexed meanwhile by a live download
    const done = await withLock(cache, digest, owner, async () => {
      const size = await fileSize(cache, rel);
      if (size === undefined) return;
      report.checked++;
      report.bytes += size;
      // Hashed through a checked descriptor, and indexed (read-only, with its identity) only when right.
      if (await cache.adoptBlob(digest, size, 'application/octet-stream')) {
        report.adopted.push(digest);
      } else {
        await removeInside(cache.dir, rel);
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
    const rel = partialName(digest);
    const done = await withLock(cache, digest, owner, async () => {
      const size = await fileSize(cache, rel);
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
        const { fh } = await openRegular(cache.dir, rel, 'r+');
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
  for (const name of await filesIn(cache, 'partial')) {
    const digest = `sha256:${name}`;
    if (checkpointed.has(digest) || segmented.has(digest)) continue;
    const rel = `partial/${name}`;
    if (!HEX_RE.test(name)) {
      await removeInside(cache.dir, rel);
      report.partials.removedFiles.push(name);
      continue;
    }
    // A download that has not checkpointed yet holds the lock: then the file is in use.
    const done = await withLock(cache, digest, owner, async () => {
      if (cache.partial(digest)) return;
      await removeInside(cache.dir, rel);
      report.partials.removedFiles.push(digest);
    });
    if (!done) report.locked.push(digest);
  }

  // Temp files are named LABEL.PID.TIME.RANDOM: those of dead processes are litter.
  for (const name of await filesIn(cache, 'tmp')) {
    const m = /\.(\d+)\.(\d+)\.[a-z0-9]+$/.exec(name);
    const pid = m ? Number(m[1]) : NaN;
    if (pid === process.pid || (Number.isInteger(pid) && isAlive(pid))) continue;
    await removeInside(cache.dir, `tmp/${name}`);
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
