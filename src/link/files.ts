// File placement shared by every linker: blobs come from the cache by hard link where the
// filesystem allows it, by copy otherwise; outputs appear under their final name only when complete.
import { createHash } from 'node:crypto';
import { constants, createWriteStream, linkSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, type Stats } from 'node:fs';
import { copyFile, mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { isAlive } from '../cache/cache.js';
import { describeWriteError } from '../cache/write-error.js';

/**
 * A file to place in an output: its path (for a hard link) and an opener that checks it (for a
 * cache blob: a regular file, no link, the very file the index recorded; Cache.blobSource).
 */
export interface FileSource {
  readonly path: string;
  open(): Promise<{ fh: FileHandle; stat: Stats }>;
  /** Whether an lstat of a hard link made from `path` shows the checked file (cache blobs: Cache.blobSource). */
  isRecorded?(st: Stats): boolean;
}

/** A file this process just wrote (a temp file): opened without following a link. */
export function ownFile(path: string): FileSource {
  return {
    path,
    open: async () => {
      const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
      return { fh, stat: await fh.stat() };
    },
  };
}

/** Open `src`, refusing anything but a regular file of `size` bytes (when given). */
export async function openSource(src: FileSource, size?: number): Promise<{ fh: FileHandle; stat: Stats }> {
  const opened = await src.open();
  if (!opened.stat.isFile() || (size !== undefined && opened.stat.size !== size)) {
    await opened.fh.close();
    throw new Error(`${src.path} holds ${opened.stat.size} bytes, expected ${size}: the cache is damaged (run ocisave's cache verify)`);
  }
  return opened;
}

/**
 * Directories made (or found) during this run. A recursive mkdir walks the whole path on every
 * call (~330 µs a call on this project's test disks), and a registry layout needs a directory per
 * link file: made parent first, and once, each costs one mkdir.
 *
 * A layout's metadata calls (mkdir, link, small files) are made synchronously: each takes a few
 * µs of kernel time, and the async form adds a thread-pool round trip and a promise to each, which
 * doubled their CPU (4,000 mkdir + writeFile: 820 ms of CPU async, 445 ms sync). Bulk copies stay async.
 */
const madeDirs = new Set<string>();

export function ensureDir(dir: string): void {
  if (madeDirs.has(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) ensureDir(parent);
  try {
    mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  madeDirs.add(dir);
}

/**
 * Hard link `src` to `dest` (same filesystem), else copy from its checked descriptor (never
 * through a link). A hard link is made by name, so the linked inode is compared with the one
 * checked: a file swapped in between (a link, another file) is removed again and refused.
 */
export async function placeBlob(src: FileSource, dest: string, size?: number): Promise<'linked' | 'copied' | 'present'> {
  ensureDir(dirname(dest));
  const fast = src.isRecorded && size !== undefined ? linkThenCheck(src, dest, size, src.isRecorded) : undefined;
  if (fast) return fast;
  const { fh, stat } = await openSource(src, size);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(src.path, dest);
        const got = lstatSync(dest);
        if (got.isFile() && got.ino === stat.ino && got.dev === stat.dev) return 'linked';
        rmSync(dest, { force: true });
        throw new Error(`${src.path} changed while it was being linked into ${dest}; run ocisave's cache verify and save again`);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' && attempt === 0) {
          const have = lstatSync(dest);
          if (have.isFile() && have.size === stat.size) return 'present';
          rmSync(dest, { force: true });
          continue;
        }
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw err;
        break;
      }
    }
    await pipeline(fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 }), createWriteStream(dest, { flags: 'w' }));
    return 'copied';
  } finally {
    await fh.close();
  }
}

/**
 * A hard link checked after it is made: the link's inode must be the recorded file. Two sync
 * calls instead of an open, fstat, /proc readlink and close on the thread pool, which took about
 * a third of a warm save's linking (615 blobs of the medium fleet). Undefined leaves the blob to
 * the checked open (another filesystem, a file that failed the check: it reports why).
 */
function linkThenCheck(src: FileSource, dest: string, size: number, isRecorded: (st: Stats) => boolean): 'linked' | 'present' | undefined {
  try {
    linkSync(src.path, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
    // Content-addressed: a regular file of the right size in its place is this blob (as below).
    const have = lstatSync(dest);
    return have.isFile() && have.size === size ? 'present' : undefined;
  }
  const got = lstatSync(dest);
  if (got.size === size && isRecorded(got)) return 'linked';
  rmSync(dest, { force: true });
  return undefined;
}

/**
 * This host, as a staging name carries it: a pid means something only on the host (the pid
 * namespace: a container's hostname is its own) that made it.
 */
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/**
 * A temporary sibling of `finalPath`: same directory, so the last rename is atomic. The name
 * says who made it and when (`.NAME.partial-PID-TIME-HOST`), so a later save can tell the
 * staging of a killed process from that of a live one (removeStaleStaging).
 */
export function stagingPath(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.partial-${process.pid}-${Date.now().toString(36)}-${HOST_TAG}`);
}

/** Who made a staging name of `finalPath`'s, or undefined when `name` is not one. */
function stagingOwner(finalPath: string, name: string): { pid: number; at: number; host?: string } | undefined {
  const prefix = `.${basename(finalPath)}.partial-`;
  if (!name.startsWith(prefix)) return undefined;
  // `.old`: an earlier output moved aside while a new one took its name (replace below).
  const m = /^(\d+)-([0-9a-z]+)(?:-([0-9a-f]{8}))?(?:\.old)?$/.exec(name.slice(prefix.length));
  return m ? { pid: Number(m[1]), at: Number.parseInt(m[2]!, 36), host: m[3] } : undefined;
}

/**
 * Whether the process that made a staging name may still be running: its pid is alive and was
 * not given to a newer process since (Linux: /proc/PID/stat start time, to about a second).
 */
function ownerMayRun(pid: number, at: number): boolean {
  if (pid === process.pid) return at >= Math.floor(performance.timeOrigin);
  if (!isAlive(pid)) return false;
  const started = processStartMs(pid);
  return started === undefined || started <= at + 2000;
}

/** When process `pid` started (ms since the epoch), from /proc; undefined where unknown. */
function processStartMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime, in clock ticks since boot) counts from after the ")" ending the name.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    // USER_HZ is 100 on every Linux architecture Node runs on.
    return Number.isFinite(ticks) && Number.isFinite(btime) ? btime * 1000 + ticks * 10 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Remove the staging outputs of `finalPath` that processes killed mid-save (kill -9, power cut)
 * left beside it: only names of this form, only from this host, only when their process is gone.
 * A live concurrent save's staging is left alone. `rm` never follows a symlink: a link inside a
 * staging rootfs is unlinked, never walked. Returns the names removed.
 */
export async function removeStaleStaging(finalPath: string): Promise<string[]> {
  const dir = dirname(finalPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = stagingOwner(finalPath, name);
    if (!owner || (owner.host !== undefined && owner.host !== HOST_TAG) || ownerMayRun(owner.pid, owner.at)) continue;
    try {
      await rm(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    } catch {
      // e.g. a directory a killed unpack left without write permission: litter, never a reason to fail a save
    }
  }
  return removed;
}

/**
 * Build an output at a staging name and rename it into place once `build` finishes.
 * A killed or failed build leaves only the staging name, never a complete-looking output.
 * An existing output is replaced only after the new one is complete.
 */
export async function writeAtomically<T>(finalPath: string, build: (stagingPath: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(finalPath), { recursive: true });
  await removeStaleStaging(finalPath);
  const staging = stagingPath(finalPath);
  try {
    const result = await build(staging);
    await replace(staging, finalPath);
    return result;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw describeWriteError(err, finalPath);
  }
}

async function replace(staging: string, finalPath: string): Promise<void> {
  try {
    await rename(staging, finalPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR') throw err;
    // A directory cannot be renamed over a non-empty one: move the old aside first.
    const old = `${staging}.old`;
    await rename(finalPath, old);
    await rename(staging, finalPath);
    await rm(old, { recursive: true, force: true });
  }
}
