// The shared content-addressed cache: blobs/sha256/<hex> files (complete and verified only),
// partial/<hex> downloads in progress, and an LMDB environment indexing both.
// Several processes (and worker threads) may open the same cache at once.
import { mkdirSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { digestHex } from '../ref/digest.js';

export interface BlobRecord {
  size: number;
  mediaType: string;
  completedAt: number;
  lastUsedAt: number;
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

  static open(dir: string): Cache {
    for (const sub of ['blobs/sha256', 'partial', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
    // separateFlushed: a write resolves once committed (visible to every process); the fsync
    // finishes behind it. A record lost to an OS crash means a blob fetched again or re-indexed by
    // `cache verify`, never a wrong answer, and during a save each awaited fsync would otherwise
    // queue behind the writeback of the blob data just written.
    const env = open({ path: join(dir, 'index.lmdb'), maxDbs: 8, mapSize: 2 ** 34, separateFlushed: true });
    // Locks need atomicity among live processes, not durability (after a crash every lock is stale),
    // so their environment skips the fsync that costs ~4 ms a commit in the index.
    const lockEnv = open({ path: join(dir, 'locks.lmdb'), noSync: true });
    return new Cache(
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
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', hexOf(digest));
  }

  partialPath(digest: string): string {
    return join(this.dir, 'partial', hexOf(digest));
  }

  /** A unique temp path inside the cache (same filesystem, so rename is atomic). */
  tempPath(label: string): string {
    return join(this.dir, 'tmp', `${label}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}`);
  }

  /** Complete: indexed as such and the file is there with the recorded size. */
  hasBlob(digest: string): boolean {
    const rec = this.blobs.get(digest);
    if (!rec) return false;
    try {
      return statSync(this.blobPath(digest)).size === rec.size;
    } catch {
      return false;
    }
  }

  /**
   * A verified file whose index record never committed (the process died between the rename and
   * the commit): files reach blobs/ only after verification, so one of the expected size is
   * indexed rather than fetched again.
   */
  async adoptBlob(digest: string, size: number, mediaType: string): Promise<boolean> {
    try {
      if (statSync(this.blobPath(digest)).size !== size) return false;
    } catch {
      return false;
    }
    const now = Date.now();
    await this.blobs.put(digest, { size, mediaType, completedAt: now, lastUsedAt: now });
    return true;
  }

  blobRecord(digest: string): BlobRecord | undefined {
    return this.blobs.get(digest);
  }

  /** Move a verified file into place, then index it: "complete" is only said once the file is there. */
  async commitBlob(digest: string, verifiedPath: string, size: number, mediaType: string): Promise<void> {
    await rename(verifiedPath, this.blobPath(digest));
    const now = Date.now();
    // One transaction: lmdb-js batches it with the other writes of this thread into one commit.
    await this.env.transaction(() => {
      this.blobs.put(digest, { size, mediaType, completedAt: now, lastUsedAt: now });
      this.partials.remove(digest);
      this.removeSegments(digest);
    });
  }

  async forgetBlob(digest: string): Promise<void> {
    await this.blobs.remove(digest);
    await rm(this.blobPath(digest), { force: true });
  }

  *listBlobs(): Generator<{ digest: string; record: BlobRecord }> {
    for (const { key, value } of this.blobs.getRange()) yield { digest: key, record: value };
  }

  async touch(digests: Iterable<string>): Promise<void> {
    const now = Date.now();
    await this.env.transaction(() => {
      for (const d of digests) {
        const rec = this.blobs.get(d);
        if (rec) this.blobs.put(d, { ...rec, lastUsedAt: now });
      }
    });
  }

  partial(digest: string): PartialRecord | undefined {
    return this.partials.get(digest);
  }

  *listPartials(): Generator<{ digest: string; record: PartialRecord }> {
    for (const { key, value } of this.partials.getRange()) yield { digest: key, record: value };
  }

  async savePartial(digest: string, rec: PartialRecord): Promise<void> {
    await this.partials.put(digest, rec);
  }

  async clearPartial(digest: string): Promise<void> {
    await this.env.transaction(() => {
      this.partials.remove(digest);
      this.removeSegments(digest);
    });
    await rm(this.partialPath(digest), { force: true });
  }

  /** Segments are keyed `digest@start-end`, so a run that splits the blob differently starts afresh. */
  segment(digest: string, start: number, end: number): SegmentRecord | undefined {
    return this.segments.get(`${digest}@${start}-${end}`);
  }

  async saveSegment(digest: string, start: number, end: number, rec: SegmentRecord): Promise<void> {
    await this.segments.put(`${digest}@${start}-${end}`, rec);
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

  async putManifest(digest: string, rec: ManifestRecord): Promise<void> {
    if (!this.manifests.doesExist(digest)) await this.manifests.put(digest, rec);
  }

  getManifest(digest: string): ManifestRecord | undefined {
    const rec = this.manifests.get(digest);
    return rec ? { mediaType: rec.mediaType, bytes: Buffer.from(rec.bytes) } : undefined;
  }

  async putTag(name: string, rec: TagRecord): Promise<void> {
    await this.tags.put(name, rec);
  }

  getTag(name: string): TagRecord | undefined {
    return this.tags.get(name);
  }

  async close(): Promise<void> {
    await this.env.close();
    await this.lockEnv.close();
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
