// Lock files: what `ocisave resolve --lock FILE` resolved — each input pinned to
// `registry/repository@digest`, with the tag it was resolved from — so that `ocisave save --lock FILE`
// (or `-f FILE`) saves exactly those manifests later, wherever the tags have moved since.
//
// {
//   "ocisaveLock": 1,
//   "platforms": "all" | "linux/amd64,linux/arm64/v8",
//   "images": [
//     { "input": "alpine:3.19", "reference": "docker.io/library/alpine@sha256:…", "tag": "3.19",
//       "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
//       "platforms": ["linux/amd64", "linux/arm64/v8"] }
//   ]
// }
import { open, rename, stat, writeFile } from 'node:fs/promises';
import { formatPlatform, parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { isDigest } from '../ref/digest.js';
import { parseReference } from '../ref/reference.js';
import { leafManifests, type ImageGraph } from './graph.js';
import { InvalidInputError, inputError } from '../util/errors.js';

export const LOCK_VERSION = 1;
/** Lock files are small; anything bigger is not one (and is not read whole to find out). */
const MAX_LOCK_BYTES = 64 << 20;

export interface LockEntry {
  /** What the user gave (reference, or "file:line" source's reference). */
  input: string;
  /** `registry/repository@sha256:…` */
  reference: string;
  tag?: string;
  mediaType: string;
  /** Platforms of the manifests kept under it ("any" for a single manifest without one). */
  platforms: string[];
}

export interface LockFile {
  ocisaveLock: number;
  /** The --platform the lock was resolved with: the default for a save from it. */
  platforms: string;
  images: LockEntry[];
}

export function formatSelector(sel: PlatformSelector): string {
  return sel === 'all' ? 'all' : sel.map(formatPlatform).join(',');
}

export function lockFromGraph(graph: ImageGraph, platforms: PlatformSelector): LockFile {
  return {
    ocisaveLock: LOCK_VERSION,
    platforms: formatSelector(platforms),
    images: graph.images.map((image) => ({
      input: image.input,
      reference: `${image.ref.registry}/${image.ref.repository}@${image.root.digest}`,
      ...(image.ref.tag ? { tag: image.ref.tag } : {}),
      mediaType: image.root.mediaType,
      platforms: leafManifests(image.root).map((m) => (m.platform ? formatPlatform(m.platform) : 'any')),
    })),
  };
}

/** Written under a temporary name and renamed, so a reader never sees half a lock. */
export async function writeLockFile(path: string, lock: LockFile): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(lock, null, 2)}\n`);
  await rename(tmp, path);
}

/** The lock in `path`, or undefined when the file is not an ocisave lock file (an image list, YAML, a chart). */
export async function readLockFile(path: string): Promise<LockFile | undefined> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile() || st.size > MAX_LOCK_BYTES) return undefined;
    const fh = await open(path, 'r');
    try {
      // Cheap sniff first: a lock is a JSON object; image lists and charts are not.
      const { buffer, bytesRead } = await fh.read(Buffer.alloc(64), 0, 64, 0);
      if (!/^\s*\{/.test(buffer.subarray(0, bytesRead).toString('utf8').replace(/^\uFEFF/, ''))) return undefined;
      text = (await fh.readFile('utf8')).replace(/^\uFEFF/, '');
    } finally {
      await fh.close();
    }
  } catch {
    return undefined; // unreadable: the generic input reader reports it
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!data || typeof data !== 'object' || !('ocisaveLock' in data)) return undefined;
  return validateLock(data as Record<string, unknown>, path);
}

function validateLock(data: Record<string, unknown>, path: string): LockFile {
  if (data.ocisaveLock !== LOCK_VERSION) {
    throw new InvalidInputError(`${path}: lock file version ${String(data.ocisaveLock)} is not supported (this ocisave writes version ${LOCK_VERSION})`);
  }
  if (!Array.isArray(data.images)) throw new InvalidInputError(`${path}: lock file has no "images" list`);
  const images = data.images.map((e: unknown, i: number): LockEntry => {
    const entry = e as Partial<LockEntry>;
    const where = `${path}: images[${i}]`;
    if (!entry || typeof entry.reference !== 'string') throw new InvalidInputError(`${where} has no "reference"`);
    let ref;
    try {
      ref = parseReference(entry.reference);
    } catch (err) {
      throw inputError(`${where}: ${(err as Error).message}`, err);
    }
    if (!ref.digest) throw new InvalidInputError(`${where}: "${entry.reference}" is not pinned by digest (registry/repository@sha256:…)`);
    if (entry.tag !== undefined && (typeof entry.tag !== 'string' || /[@:/\s]/.test(entry.tag))) throw new InvalidInputError(`${where}: "tag" is not a tag`);
    return {
      input: typeof entry.input === 'string' ? entry.input : entry.reference,
      reference: entry.reference,
      ...(entry.tag ? { tag: entry.tag } : {}),
      mediaType: typeof entry.mediaType === 'string' ? entry.mediaType : '',
      platforms: Array.isArray(entry.platforms) ? entry.platforms.map(String) : [],
    };
  });
  const platforms = typeof data.platforms === 'string' ? data.platforms : 'all';
  try {
    parsePlatformSelector(platforms);
  } catch (err) {
    throw inputError(`${path}: "platforms": ${(err as Error).message}`, err);
  }
  return { ocisaveLock: LOCK_VERSION, platforms, images };
}

/**
 * What to save for each entry: `registry/repository:tag@digest`. The digest decides what is fetched;
 * the tag only names it in the output (so a served bundle still answers the tag with the locked digest).
 */
export function lockReferences(lock: LockFile): string[] {
  return lock.images.map((e) => {
    const at = e.reference.lastIndexOf('@');
    const name = e.reference.slice(0, at);
    const digest = e.reference.slice(at + 1);
    if (!isDigest(digest)) throw new InvalidInputError(`lock entry "${e.reference}" is not pinned by digest`);
    return e.tag ? `${name}:${e.tag}@${digest}` : `${name}@${digest}`;
  });
}
