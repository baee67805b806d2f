// The shared content-addressed cache: blobs/sha256/<hex> files (complete and verified only),
// partial/<hex> downloads in progress, and an LMDB environment indexing both.
// Several processes (and worker threads) may open the same cache at once.
//
// The cache is untrusted on disk (another user or tool may write it): files are reached only
// through src/fs/contained.ts (no link followed), blob files are read-only (0444, as containerd's
// content store keeps them) and each record holds the file's identity at commit (inode, mtime,
// size). A blob whose file no longer has that identity is hashed again before it is used.
import { accessSync, chmodSync, closeSync, constants, ftruncateSync, lstatSync, mkdirSync, renameSync, rmSync, statSync, writev, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { open, type Database, type RootDatabase } from 'lmdb';
import { digestHex } from '../ref/digest.js';
import { sha256Bytes } from '../hash/hasher.js';
import { commitCause, describeWriteError } from './write-error.js';
import { hashHandle, lstatInside, lstatInsideSync, openRegular, openRegularFdSync, removeInside, streamOpened, UnsafePathError } from '../fs/contained.js';
import type { FileHandle } from 'node:fs/promises';
import { OcisaveError } from '../util/errors.js';

export interface BlobRecord {
  size: number;
  mediaType: string;
  completedAt: number;
  lastUsedAt: number;
  /** The file's identity when it was committed or last hashed (absent in records of older versions: hashed once, then recorded). */
  ino?: number;
  mtimeMs?: number;
}

/** Blob files are read-only for everyone: a stray write (or an output edited in place through a hard link) fails instead of corrupting. */
export const BLOB_MODE = 0o444;

/** A cache file that is not what its record says (replaced, rewritten, a link): hashed again or fetched again. */
export class CacheIntegrityError extends OcisaveError {
  constructor(message: string) {
    super('CORRUPT', message);
    this.name = 'CacheIntegrityError';
  }
}

/** The cache's own directories, which must be real directories (a link would send writes and removals elsewhere). */
const CACHE_DIRS = ['blobs', 'blobs/sha256', 'partial', 'tmp'] as const;

export interface CacheOpenOptions {
  /** Replace a cache directory that is a symbolic link by an empty real one (cache verify's repair); otherwise refuse to open. */
  replaceLinkedDirs?: boolean;
}

/** A download checkpoint: the partial file is valid up to `offset`, and `hasherState` (if any) covers exactly those bytes. */
export interface PartialRecord {
  offset: number;
  hasher: string;
  hasherState?: Uint8Array;
  updatedAt: number;
}

/** Progress of one range of a segmented download: bytes [start, offset) of the partial file are on disk. */
export interface SegmentRecord {
  offset: number;
  updatedAt: number;
}

export interface ManifestRecord {
  mediaType: string;
  bytes: Buffer;
}

export interface TagRecord {
  digest: string;
  mediaType: string;
  resolvedAt: number;
}

/** Who is downloading a blob right now: one process at a time, across every process sharing the cache. */
export interface LockRecord {
  pid: number;
  owner: string;
  at: number;
}

/**
 * Tags and manifests wait this long to be committed together (or ride along the thread's next
 * blob commit): a cold medium save puts 661 of them, mostly one per HTTP answer, each its own LMDB
 * transaction (~1 ms of CPU alone, ~0.07 ms batched; bench/README.md, "Round 2"). Resolve waits for
 * them once, at its end: 20 ms there, where 100 ms would be a tenth of a warm save's target.
 * A record lost to a kill is fetched again.
 */
const DEFER_MS = 20;

/**
 * A blob's record waits at most this long for others to share its commit. Blobs finish a few
 * hundred µs apart on loopback, each commit alone cost ~1.3 ms of CPU across threads (pages
 * written, an fdatasync, the write thread woken): 214 commits for 421 small blobs. The caller
 * waits for the commit either way, and a download holds its connection that much longer.
 */
const BLOB_DEFER_MS = 10;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OCISAVE_CACHE) return env.OCISAVE_CACHE;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'ocisave');
}

/** The hex part of a sha256 digest, checked: it names a file, so nothing else may pass. */
export function hexOf(digest: string): string {
  return digestHex(digest);
}

export class Cache {
  private constructor(
    readonly dir: string,
    private readonly env: RootDatabase,
    private readonly lockEnv: RootDatabase,
    private readonly blobs: Database<BlobRecord, string>,
    private readonly partials: Database<PartialRecord, string>,
    private readonly manifests: Database<ManifestRecord, string>,
    private readonly tags: Database<TagRecord, string>,
    private readonly locks: Database<LockRecord, string>,
    private readonly segments: Database<SegmentRecord, string>,
  ) {}

  /** Cache directories that were links and were replaced (with `replaceLinkedDirs`). */
  readonly replacedLinks: string[] = [];

  /** Tag and manifest records put but not yet committed (see DEFER_MS); reads look here first. */
  private readonly pendingManifests = new Map<string, ManifestRecord>();
  private readonly pendingTags = new Map<string, TagRecord>();
  /**
   * Blob records whose files are in place, for the next commit (see BLOB_DEFER_MS). Reads do not
   * look here: a blob is complete once its commitBlob() resolved, after the commit.
   */
  private readonly pendingBlobs = new Map<string, BlobRecord>();
  private pendingCommit?: { timer: NodeJS.Timeout; due: number; done: Promise<void>; settle: (write: Promise<unknown>) => void };

  static open(dir: string, opts: CacheOpenOptions = {}): Cache {
    mkdirSync(dir, { recursive: true });
    const replaced = ensureCacheDirs(dir, !!opts.replaceLinkedDirs);
    checkWritable(dir);
    // separateFlushed: a write resolves once committed (visible to every process); the fsync
    // finishes behind it. A record lost to an OS crash means a blob fetched again or re-indexed by
    // `cache verify`, never a wrong answer, and during a save each awaited fsync would otherwise
    // queue behind the writeback of the blob data just written.
    const env = openIndex(dir, () => open({ path: join(dir, 'index.lmdb'), maxDbs: 8, mapSize: 2 ** 34, separateFlushed: true }));
    // Locks need atomicity among live processes, not durability (after a crash every lock is stale),
    // so their environment skips the fsync that costs ~4 ms a commit in the index.
    const lockEnv = openIndex(dir, () => open({ path: join(dir, 'locks.lmdb'), noSync: true }));
    const cache = new Cache(
      dir,
      env,
      lockEnv,
      env.openDB<BlobRecord, string>({ name: 'blobs' }),
      env.openDB<PartialRecord, string>({ name: 'partials' }),
      env.openDB<ManifestRecord, string>({ name: 'manifests' }),
      env.openDB<TagRecord, string>({ name: 'tags' }),
      lockEnv.openDB<LockRecord, string>({ name: 'locks' }),
      env.openDB<SegmentRecord, string>({ name: 'segments' }),
    );
    cache.replacedLinks.push(...replaced);
    return cache;
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', hexOf(digest));
  }

  /** The blob's name relative to the cache directory, for the contained file functions. */
  blobName(digest: string): string {
    return `blobs/sha256/${hexOf(digest)}`;
  }

  partialPath(digest: string): string {
    return join(this.dir, 'partial', hexOf(digest));
  }

  /**
   * Open a blob's partial file without following a link: 'w' starts it afresh (whatever was
   * there, a planted link included, is removed first), 'a' creates it if absent, 'r+' continues it.
   * Its metadata calls are synchronous, once per blob (see openRegularFdSync).
   */
  async openPartial(digest: string, mode: 'w' | 'a' | 'r+'): Promise<PartialFile> {
    const name = `partial/${hexOf(digest)}`;
    const st = lstatInsideSync(this.dir, name);
    if (st && (mode === 'w' || !st.isFile())) await removeInside(this.dir, name);
    const flags = mode === 'r+' ? constants.O_RDWR : constants.O_WRONLY | constants.O_CREAT | (mode === 'w' ? constants.O_EXCL : 0);
    return new PartialFile(openRegularFdSync(this.dir, name, flags).fd);
  }

  /** A unique temp path inside the cache (same filesystem, so rename is atomic). */
  tempPath(label: string): string {
    return join(this.dir, 'tmp', `${label}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}`);
  }

  /**
   * Complete: indexed as such, and the file is the one recorded (a regular file, not a link, with
   * the recorded size, inode and mtime). Anything else needs `checkBlob` (hashing) first.
   */
  hasBlob(digest: string): boolean {
    const rec = this.blobs.get(digest);
    if (!rec) return false;
    try {
      const st = lstatInsideSync(this.dir, this.blobName(digest));
      return !!st && sameIdentity(st, rec);
    } catch {
      return false;
    }
  }

  /**
   * Whether the blob is usable, hashing its file when its identity changed (or was never
   * recorded): right bytes are re-recorded; a wrong file is dropped (to be fetched again).
   */
  async checkBlob(digest: string): Promise<boolean> {
    if (this.hasBlob(digest)) return true;
    const rec = this.blobs.get(digest);
    if (!rec) return false;
    const st = await this.hashAndRecord(digest, rec.size, rec.mediaType, rec.completedAt);
    if (!st) await this.forgetBlob(digest);
    return !!st;
  }

  /**
   * A file in blobs/ whose index record never committed (the process died between the rename
   * and the commit, or someone put it there): hashed, and indexed only when it matches.
   */
  async adoptBlob(digest: string, size: number, mediaType: string): Promise<boolean> {
    return !!(await this.hashAndRecord(digest, size, mediaType, Date.now()));
  }

  /** Hash the blob's file through a checked descriptor; when it matches, make it read-only and record its identity. */
  private async hashAndRecord(digest: string, size: number, mediaType: string, completedAt: number): Promise<Stats | undefined> {
    let fh: FileHandle | undefined;
    try {
      // A cold save asks this of every blob it plans: one synchronous lstat answers "absent"
      // (an async lstat and open cost ~0.15 ms of CPU a blob, see openRegularFdSync).
      if (!lstatInsideSync(this.dir, this.blobName(digest))) return undefined;
      const opened = await openRegular(this.dir, this.blobName(digest));
      fh = opened.fh;
      if (opened.stat.size !== size) return undefined;
      const got = await hashHandle(fh);
      if (got.digest !== digest || got.size !== size) return undefined;
      // Another user's file in a shared cache cannot be chmod'ed by us; its identity is still recorded.
      await fh.chmod(BLOB_MODE).catch(() => undefined);
      const st = await fh.stat();
      await this.indexWrite(this.blobs.put(digest, { size, mediaType, completedAt, lastUsedAt: Date.now(), ino: st.ino, mtimeMs: st.mtimeMs }));
      return st;
    } catch (err) {
      if (err instanceof UnsafePathError || ['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? '')) return undefined;
      throw err;
    } finally {
      await fh?.close();
    }
  }

  /**
   * Hash an indexed blob's file (cache verify): right bytes get their identity recorded again,
   * 'missing' and 'corrupt' are left to the caller to forget.
   */
  async rehashBlob(digest: string): Promise<{ state: 'ok' | 'missing' | 'corrupt'; bytes: number }> {
    const rec = this.blobs.get(digest);
    const st = await lstatInside(this.dir, this.blobName(digest)).catch(() => undefined);
    if (!rec || !st) return { state: 'missing', bytes: 0 };
    const ok = await this.hashAndRecord(digest, rec.size, rec.mediaType, rec.completedAt);
    return { state: ok ? 'ok' : 'corrupt', bytes: st.isFile() ? st.size : 0 };
  }

  /** Open a complete blob for reading: the recorded file, through a descriptor checked to be it. */
  async openBlob(digest: string): Promise<{ fh: FileHandle; stat: Stats }> {
    let opened;
    try {
      opened = await openRegular(this.dir, this.blobName(digest));
    } catch (err) {
      if (err instanceof UnsafePathError) throw new CacheIntegrityError(`cache blob ${digest}: ${err.message}; run \`ocisave cache verify\``);
      throw err;
    }
    // A blob a worker (or another process) committed a moment ago may be newer than this
    // thread's read snapshot (lmdb-js keeps one per event-loop turn): look again with a fresh one.
    let rec = this.blobs.get(digest);
    if (!rec || !sameIdentity(opened.stat, rec)) {
      this.env.resetReadTxn();
      rec = this.blobs.get(digest);
    }
    if (!rec || !sameIdentity(opened.stat, rec)) {
      await opened.fh.close();
      throw new CacheIntegrityError(
        rec
          ? `cache blob ${digest} changed since it was verified (a different file, size or mtime); run \`ocisave cache verify\` and save again`
          : `blob ${digest} is not in the cache at ${this.dir}`,
      );
    }
    return opened;
  }

  /** A complete blob's bytes, for small blobs (configs); refuses more than `maxBytes`. */
  async readBlob(digest: string, maxBytes: number): Promise<Buffer> {
    const { fh, stat } = await this.openBlob(digest);
    try {
      if (stat.size > maxBytes) throw new CacheIntegrityError(`cache blob ${digest} is ${stat.size} bytes, more than the ${maxBytes} expected`);
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  /**
   * A complete blob as the linkers take it: its path (for hard links), a checked opener (for
   * copies), and its checked identity without opening it (a hard link is compared with that).
   */
  blobSource(digest: string): { path: string; open: () => Promise<{ fh: FileHandle; stat: Stats }>; identity: () => Stats } {
    return { path: this.blobPath(digest), open: () => this.openBlob(digest), identity: () => this.blobIdentity(digest) };
  }

  /**
   * The blob's file as recorded (reached without a link, same inode, size and mtime), by lstat:
   * a synchronous call where openBlob makes four asynchronous ones (~0.15 ms of CPU a blob).
   */
  blobIdentity(digest: string): Stats {
    let st: Stats | undefined;
    try {
      st = lstatInsideSync(this.dir, this.blobName(digest));
    } catch (err) {
      if (err instanceof UnsafePathError) throw new CacheIntegrityError(`cache blob ${digest}: ${err.message}; run \`ocisave cache verify\``);
      throw err;
    }
    let rec = this.blobs.get(digest);
    // As in openBlob: a commit of another thread may be newer than this thread's read snapshot.
    if (st && (!rec || !sameIdentity(st, rec))) {
      this.env.resetReadTxn();
      rec = this.blobs.get(digest);
    }
    if (!st || !rec || !sameIdentity(st, rec)) {
      throw new CacheIntegrityError(
        rec && st
          ? `cache blob ${digest} changed since it was verified (a different file, size or mtime); run \`ocisave cache verify\` and save again`
          : `blob ${digest} is not in the cache at ${this.dir}`,
      );
    }
    return st;
  }

  /** A complete blob's bytes as a stream, from a checked descriptor. */
  blobStream(digest: string): Readable {
    return streamOpened(() => this.openBlob(digest));
  }

  blobRecord(digest: string): BlobRecord | undefined {
    return this.blobs.get(digest);
  }

  /**
   * Move a verified file into place, read-only, then index it with its identity: "complete" is
   * only said once the file is there. `verifiedPath` is a file of ours (partial/ or tmp/).
   */
  async commitBlob(digest: string, verifiedPath: string, size: number, mediaType: string): Promise<void> {
    // Synchronous: three metadata calls of a few µs each, once per blob; their async forms cost
    // a thread-pool round trip each (~0.1 ms of CPU), 1,000 blobs a medium save.
    const st = lstatSync(verifiedPath);
    if (!st.isFile() || st.size !== size) throw new CacheIntegrityError(`${verifiedPath} is not a regular file of ${size} bytes; not committing ${digest}`);
    chmodSync(verifiedPath, BLOB_MODE);
    renameSync(verifiedPath, this.blobPath(digest));
    const now = Date.now();
    // The rename keeps the inode and mtime (chmod changes only ctime), so the identity read before it holds.
    this.pendingBlobs.set(digest, { size, mediaType, completedAt: now, lastUsedAt: now, ino: st.ino, mtimeMs: st.mtimeMs });
    await this.deferCommit(BLOB_DEFER_MS);
  }

  async forgetBlob(digest: string): Promise<void> {
    await this.blobs.remove(digest);
    await removeInside(this.dir, this.blobName(digest));
  }

  *listBlobs(): Generator<{ digest: string; record: BlobRecord }> {
    for (const { key, value } of this.blobs.getRange()) yield { digest: key, record: value };
  }

  /** Mark blobs used at `at` (now by default), as prune --older-than reads it. */
  async touch(digests: Iterable<string>, at = Date.now()): Promise<void> {
    await this.indexWrite(
      this.env.transaction(() => {
        for (const d of digests) {
          const rec = this.blobs.get(d);
          if (rec) this.blobs.put(d, { ...rec, lastUsedAt: at });
        }
      }),
    );
  }

  partial(digest: string): PartialRecord | undefined {
    return this.partials.get(digest);
  }

  *listPartials(): Generator<{ digest: string; record: PartialRecord }> {
    for (const { key, value } of this.partials.getRange()) yield { digest: key, record: value };
  }

  async savePartial(digest: string, rec: PartialRecord): Promise<void> {
    await this.indexWrite(this.partials.put(digest, rec));
  }

  async clearPartial(digest: string): Promise<void> {
    await this.indexWrite(
      this.env.transaction(() => {
        this.partials.remove(digest);
        this.removeSegments(digest);
      }),
    );
    await removeInside(this.dir, `partial/${hexOf(digest)}`);
  }

  /** Segments are keyed `digest@start-end`, so a run that splits the blob differently starts afresh. */
  segment(digest: string, start: number, end: number): SegmentRecord | undefined {
    return this.segments.get(`${digest}@${start}-${end}`);
  }

  async saveSegment(digest: string, start: number, end: number, rec: SegmentRecord): Promise<void> {
    await this.indexWrite(this.segments.put(`${digest}@${start}-${end}`, rec));
  }

  /** The ranges an earlier run split `digest` into, in order (empty when it was not split). */
  segmentRanges(digest: string): [number, number][] {
    const out: [number, number][] = [];
    for (const k of this.segments.getKeys({ start: `${digest}@`, end: `${digest}@\uffff` })) {
      const m = /@(\d+)-(\d+)$/.exec(String(k));
      if (m) out.push([Number(m[1]), Number(m[2])]);
    }
    return out.sort((a, b) => a[0] - b[0]);
  }

  /** Digests with segment checkpoints: segmented downloads in progress (cache maintenance keeps their partial files). */
  segmentedDigests(): Set<string> {
    const out = new Set<string>();
    for (const k of this.segments.getKeys()) out.add(String(k).slice(0, String(k).indexOf('@')));
    return out;
  }

  /** Inside a transaction. */
  private removeSegments(digest: string): void {
    for (const k of [...this.segments.getKeys({ start: `${digest}@`, end: `${digest}@\uffff` })]) this.segments.remove(k);
  }

  /**
   * Take the download lock for `digest` unless a live process holds it. LMDB write transactions
   * are serialised across processes, so the check and the claim are one atomic step.
   */
  tryLock(digest: string, owner: string): boolean {
    const taken = this.lockEnv.transactionSync(() => {
      const held = this.locks.get(digest);
      if (held && held.owner !== owner && held.pid !== process.pid && isAlive(held.pid)) return false;
      this.locks.putSync(digest, { pid: process.pid, owner, at: Date.now() });
      return true;
    });
    // lmdb-js keeps one read snapshot per event-loop turn: drop it, so the holder's next look
    // (has another process finished this blob meanwhile?) sees commits made before the lock.
    if (taken) this.env.resetReadTxn();
    return taken;
  }

  unlock(digest: string, owner: string): void {
    this.lockEnv.transactionSync(() => {
      if (this.locks.get(digest)?.owner === owner) this.locks.removeSync(digest);
    });
  }

  /** Stores a manifest whose bytes the caller checked against `digest`; a damaged record of it is replaced. Committed within DEFER_MS. */
  async putManifest(digest: string, rec: ManifestRecord): Promise<void> {
    if (this.getManifest(digest)) return;
    this.pendingManifests.set(digest, rec);
    await this.deferCommit();
  }

  /**
   * A manifest by digest, re-hashed on every read: the index is a file another process (or user)
   * can write, and a manifest is a few KiB (414 of the medium fleet hash in ~2 ms). Bytes that do
   * not match count as absent, so the caller fetches them again and the put replaces them.
   */
  getManifest(digest: string): ManifestRecord | undefined {
    const rec = this.pendingManifests.get(digest) ?? this.manifests.get(digest);
    if (!rec || !(rec.bytes instanceof Uint8Array) || typeof rec.mediaType !== 'string') return undefined;
    const bytes = Buffer.from(rec.bytes);
    return sha256Bytes(bytes) === digest ? { mediaType: rec.mediaType, bytes } : undefined;
  }

  /** Committed within DEFER_MS (with other tags and manifests, or with this thread's next blob commit). */
  async putTag(name: string, rec: TagRecord): Promise<void> {
    this.pendingTags.set(name, rec);
    await this.deferCommit();
  }

  getTag(name: string): TagRecord | undefined {
    return this.pendingTags.get(name) ?? this.tags.get(name);
  }

  /** The commit that will carry the pending records, within `ms`: started by a timer, or earlier by commitPending. */
  private deferCommit(ms = DEFER_MS): Promise<void> {
    const due = performance.now() + ms;
    if (!this.pendingCommit) {
      let settle!: (write: Promise<unknown>) => void;
      const done = new Promise<void>((resolve, reject) => (settle = (write) => write.then(() => resolve(), reject)));
      this.pendingCommit = { timer: setTimeout(() => this.commitPending(), ms), due, done, settle };
    } else if (due < this.pendingCommit.due) {
      // A blob's record does not wait out the longer delay of the tags already pending.
      clearTimeout(this.pendingCommit.timer);
      this.pendingCommit.timer = setTimeout(() => this.commitPending(), ms);
      this.pendingCommit.due = due;
    }
    return this.pendingCommit.done;
  }

  /**
   * Write the pending records now. Called in the same event-loop turn as another index write, it
   * joins that write's commit (lmdb-js batches a turn's writes into one transaction).
   */
  private commitPending(): void {
    const pending = this.pendingCommit;
    if (!pending) return;
    this.pendingCommit = undefined;
    clearTimeout(pending.timer);
    const manifests = [...this.pendingManifests];
    const tags = [...this.pendingTags];
    const blobs = [...this.pendingBlobs];
    this.pendingBlobs.clear();
    const write = this.indexWrite(
      this.env.transaction(() => {
        for (const [digest, rec] of manifests) this.manifests.put(digest, rec);
        for (const [name, rec] of tags) this.tags.put(name, rec);
        for (const [digest, rec] of blobs) {
          this.blobs.put(digest, rec);
          this.partials.remove(digest);
          this.removeSegments(digest);
        }
      }),
    );
    // Reads find them in pending until they are committed (a later put of the same key wins).
    void write.then(() => {
      for (const [digest, rec] of manifests) if (this.pendingManifests.get(digest) === rec) this.pendingManifests.delete(digest);
      for (const [name, rec] of tags) if (this.pendingTags.get(name) === rec) this.pendingTags.delete(name);
    }, () => undefined);
    pending.settle(write);
  }

  /** An index write whose failure names the errno and the index (a full disk: ENOSPC writing …/index.lmdb). */
  private async indexWrite<T>(write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (err) {
      throw describeWriteError(await commitCause(err), join(this.dir, 'index.lmdb'));
    }
  }

  async close(): Promise<void> {
    const pending = this.pendingCommit?.done;
    this.commitPending();
    await pending?.catch(() => undefined); // its callers were told of a failure
    await this.env.close();
    await this.lockEnv.close();
  }
}

/**
 * A partial file open for a download: a descriptor and the calls a download makes on it. Writes
 * stay asynchronous (bulk); truncate and close are single metadata calls, made synchronously.
 */
export class PartialFile {
  private closed = false;
  constructor(readonly fd: number) {}

  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }> {
    return new Promise((resolve, reject) => writev(this.fd, buffers, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten }))));
  }

  async truncate(length: number): Promise<void> {
    ftruncateSync(this.fd, length);
  }

  /** Closes once; later calls do nothing (error paths close again). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

function sameIdentity(st: Stats, rec: BlobRecord): boolean {
  return st.isFile() && st.size === rec.size && rec.ino !== undefined && st.ino === rec.ino && st.mtimeMs === rec.mtimeMs;
}

/**
 * Make the cache's directories, each a real directory: a link (to anywhere) is refused, or with
 * `replace` removed (the link only, its target untouched) and made again. Returns what was replaced.
 */
function ensureCacheDirs(dir: string, replace: boolean): string[] {
  const replaced: string[] = [];
  for (const sub of CACHE_DIRS) {
    const path = join(dir, sub);
    let st = lstatOrUndefined(path);
    if (st && !st.isDirectory()) {
      const what = st.isSymbolicLink() ? 'a symbolic link' : 'not a directory';
      if (!replace) throw new CacheIntegrityError(`cache ${dir}: ${sub} is ${what}; ocisave never follows links in its cache: run \`ocisave cache verify\` to replace it by an empty directory`);
      rmSync(path); // unlinks the link itself, never what it points at
      replaced.push(sub);
      st = undefined;
    }
    if (!st) mkdirSync(path);
  }
  return replaced;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A cache this user cannot write fails closed, saying why, before LMDB does with "Attempting to setup locks". */
function checkWritable(dir: string): void {
  for (const sub of ['', ...CACHE_DIRS, 'index.lmdb', 'index.lmdb-lock', 'locks.lmdb', 'locks.lmdb-lock']) {
    const path = join(dir, sub);
    if (sub && !lstatOrUndefined(path)) continue;
    try {
      accessSync(path, constants.R_OK | constants.W_OK);
    } catch {
      throw new CacheIntegrityError(sharedCacheMessage(dir, path));
    }
  }
}

function sharedCacheMessage(dir: string, path: string): string {
  const st = statSync(path);
  const uid = process.getuid?.() ?? -1;
  return (
    `cache ${dir} is not writable by this user (uid ${uid}): ${path} belongs to uid ${st.uid}, gid ${st.gid}, mode ${(st.mode & 0o7777).toString(8)}; ` +
    `use a cache of your own (--cache DIR or OCISAVE_CACHE), or share one through a group (README: "Shared cache")`
  );
}

function openIndex(dir: string, openEnv: () => RootDatabase): RootDatabase {
  try {
    return openEnv();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || /setup locks|permission denied/i.test((err as Error).message)) {
      throw new CacheIntegrityError(`cache ${dir}: its index cannot be opened by this user (uid ${process.getuid?.() ?? -1}): ${(err as Error).message.split('\n')[0]}; use a cache of your own (--cache DIR), or share one through a group (README: "Shared cache")`);
    }
    throw err;
  }
}

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
