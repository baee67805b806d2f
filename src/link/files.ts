// File placement shared by every linker: blobs come from the cache by hard link where the
// filesystem allows it, by copy otherwise; outputs appear under their final name only when complete.
import { constants, createWriteStream, linkSync, lstatSync, mkdirSync, rmSync, type Stats } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';

/**
 * A file to place in an output: its path (for a hard link) and an opener that checks it (for a
 * cache blob: a regular file, no link, the very file the index recorded; Cache.blobSource).
 */
export interface FileSource {
  readonly path: string;
  open(): Promise<{ fh: FileHandle; stat: Stats }>;
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

/** A temporary sibling of `finalPath`: same directory, so the last rename is atomic. */
export function stagingPath(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.partial-${process.pid}-${Date.now().toString(36)}`);
}

/**
 * Build an output at a staging name and rename it into place once `build` finishes.
 * A killed or failed build leaves only the staging name, never a complete-looking output.
 * An existing output is replaced only after the new one is complete.
 */
export async function writeAtomically<T>(finalPath: string, build: (stagingPath: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(finalPath), { recursive: true });
  const staging = stagingPath(finalPath);
  try {
    const result = await build(staging);
    await replace(staging, finalPath);
    return result;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
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
