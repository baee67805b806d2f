// Reading a registry v2 storage layout (distribution registry/storage/paths.go), the format
// `ocisave save --format registry` writes and `registry:2` serves:
//   blobs/sha256/<hh>/<hex>/data                                  bytes (manifests too)
//   repositories/<name>/_layers/sha256/<hex>/link                 blobs linked into the repo
//   repositories/<name>/_manifests/revisions/sha256/<hex>/link    manifests the repo holds
//   repositories/<name>/_manifests/tags/<tag>/current/link        what the tag points at
// Repository names nest (`a/b/c`): a directory is a repository when it has `_manifests` or
// `_layers`; names never have components starting with `_`, so those are never descended into.
//
// The layout is untrusted: every file and directory under the root is reached through
// src/fs/contained.ts. A link anywhere inside (blob data, a link file, a directory) is never
// followed: it reads as absent, and is reported as a problem.
import { existsSync } from 'node:fs';
import { join, sep } from 'node:path';
import { Readable } from 'node:stream';
import { hexOf } from '../cache/cache.js';
import { isUnsafePath, listInside, readRegular, regularSize, streamRegular } from '../fs/contained.js';
import { REGISTRY_ROOT } from '../link/registry.js';
import {
  BundleError,
  emptyRepository,
  isSha256Digest,
  manifestMediaType,
  MAX_MANIFEST_BYTES,
  type Bundle,
  type BundleProblem,
  type BundleRepository,
  READ_CHUNK_BYTES,
  type ReadOptions,
  type StoredManifest,
} from './types.js';

/** The directory holding `docker/registry/v2`, if `path` is (or is inside the top of) a registry layout. */
export function findRegistryRoot(path: string): string | undefined {
  if (existsSync(join(path, REGISTRY_ROOT))) return path;
  // Also accept the v2 directory itself (or docker/ or docker/registry/).
  const norm = path.replace(/[/\\]+$/, '');
  for (const suffix of ['docker/registry/v2', 'docker/registry', 'docker']) {
    const s = suffix.split('/').join(sep);
    if (norm.endsWith(sep + s) || norm === s) {
      const top = norm.slice(0, norm.length - s.length).replace(/[/\\]+$/, '') || '.';
      if (existsSync(join(top, REGISTRY_ROOT))) return top;
    }
  }
  return undefined;
}

export interface RegistryScan {
  /** The bundle directory (holding docker/registry/v2). */
  root: string;
  repositories: Map<string, BundleRepository>;
  problems: BundleProblem[];
}

/** `docker/registry/v2/blobs/sha256/<hh>/<hex>/data`, relative to the bundle root. */
export function blobDataName(digest: string): string {
  const hex = hexOf(digest);
  return `${REGISTRY_ROOT}/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
}

/** Subdirectories of `rel`; links and other non-directories there become problems (never followed). */
export async function subdirsInside(root: string, rel: string, problems: BundleProblem[]): Promise<string[]> {
  try {
    const l = await listInside(root, rel);
    for (const name of l.other) {
      const path = join(root, rel, name);
      problems.push({ kind: 'bad-layout', path, message: `${path} is a symbolic link or special file; links inside a bundle are never followed` });
    }
    return l.dirs;
  } catch (err) {
    if (!isUnsafePath(err)) throw err;
    problems.push({ kind: 'bad-layout', path: err.path, message: err.message });
    return [];
  }
}

type LinkRead = { digest: string } | { problem: 'missing' | 'bad' | 'unsafe'; message?: string };

/** Read a link file: "sha256:<hex>" (no newline, but tolerate one); a link file that is a symlink is refused. */
export async function readLink(root: string, rel: string): Promise<LinkRead> {
  try {
    const text = (await readRegular(root, rel, 1024)).toString('utf8').trim();
    return isSha256Digest(text) ? { digest: text } : { problem: 'bad' };
  } catch (err) {
    if (isUnsafePath(err)) return { problem: 'unsafe', message: err.message };
    if (['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return { problem: 'missing' };
    return { problem: 'bad' };
  }
}

function linkProblem(read: Exclude<LinkRead, { digest: string }>, path: string, repository: string, missing: string): BundleProblem {
  if (read.problem === 'missing') return { kind: 'missing-link', repository, path, message: missing };
  return { kind: 'bad-link', repository, path, message: read.message ?? `${path}: does not hold a sha256 digest` };
}

/**
 * Links under `<dir>/sha256/<hex>/link`: each must hold the digest its directory is named for.
 * Returns the good digests; bad ones become problems.
 */
async function digestLinks(root: string, dir: string, repository: string, problems: BundleProblem[]): Promise<string[]> {
  const out: string[] = [];
  for (const hex of await subdirsInside(root, `${dir}/sha256`, problems)) {
    const rel = `${dir}/sha256/${hex}/link`;
    const path = join(root, rel);
    const read = await readLink(root, rel);
    if (!('digest' in read)) problems.push(linkProblem(read, path, repository, `${path}: link file missing`));
    else if (read.digest !== `sha256:${hex}`) {
      problems.push({ kind: 'bad-link', repository, path, digest: read.digest, message: `${path}: holds ${read.digest} but its directory names sha256:${hex}` });
    } else out.push(read.digest);
  }
  return out;
}

export async function scanRegistryLayout(path: string): Promise<RegistryScan> {
  const root = findRegistryRoot(path);
  if (!root) throw new BundleError(`${path} is not a registry layout (no ${REGISTRY_ROOT} inside)`);
  const problems: BundleProblem[] = [];
  const repositories = new Map<string, BundleRepository>();
  const reposRel = `${REGISTRY_ROOT}/repositories`;

  const walk = async (rel: string): Promise<void> => {
    const children = await subdirsInside(root, rel, problems);
    if (children.includes('_manifests') || children.includes('_layers')) {
      const name = rel.slice(reposRel.length + 1);
      const repo = emptyRepository(name);
      for (const d of await digestLinks(root, `${rel}/_layers`, name, problems)) repo.blobs.add(d);
      for (const d of await digestLinks(root, `${rel}/_manifests/revisions`, name, problems)) repo.manifests.add(d);
      for (const tag of await subdirsInside(root, `${rel}/_manifests/tags`, problems)) {
        const linkRel = `${rel}/_manifests/tags/${tag}/current/link`;
        const read = await readLink(root, linkRel);
        if ('digest' in read) repo.tags.set(tag, read.digest);
        else problems.push(linkProblem(read, join(root, linkRel), name, `tag ${name}:${tag} has no current/link`));
      }
      repositories.set(name, repo);
    }
    for (const c of children) if (!c.startsWith('_')) await walk(`${rel}/${c}`);
  };
  await walk(reposRel);
  return { root, repositories, problems };
}

export class RegistryBundle implements Bundle {
  readonly format = 'registry' as const;
  private readonly manifests = new Map<string, StoredManifest | undefined>();

  private constructor(
    readonly path: string,
    readonly repositories: Map<string, BundleRepository>,
    readonly problems: BundleProblem[],
  ) {}

  static async open(path: string): Promise<RegistryBundle> {
    const scan = await scanRegistryLayout(path);
    return new RegistryBundle(scan.root, scan.repositories, scan.problems);
  }

  /** A blob's size: undefined when absent, or not a regular file (a link is never followed). */
  async blobSize(digest: string): Promise<number | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    return regularSize(this.path, blobDataName(digest));
  }

  openBlob(digest: string, start = 0, end?: number, opts?: ReadOptions): Readable {
    if (end !== undefined && end < start) return Readable.from([]);
    return streamRegular(this.path, blobDataName(digest), start, end, opts?.chunkBytes ?? READ_CHUNK_BYTES);
  }

  async manifest(digest: string): Promise<StoredManifest | undefined> {
    if (this.manifests.has(digest)) return this.manifests.get(digest);
    let found: StoredManifest | undefined;
    const size = await this.blobSize(digest);
    if (size !== undefined) {
      if (size > MAX_MANIFEST_BYTES) throw new BundleError(`manifest ${digest} in ${this.path} is ${size} bytes, more than manifests may be`);
      const bytes = await readRegular(this.path, blobDataName(digest), MAX_MANIFEST_BYTES);
      found = { digest, mediaType: manifestMediaType(bytes, undefined, `manifest ${digest}`), bytes };
    }
    this.manifests.set(digest, found);
    return found;
  }

  async close(): Promise<void> {}
}
