// Reading a registry v2 storage layout (distribution registry/storage/paths.go), the format
// `ocisave save --format registry` writes and `registry:2` serves:
//   blobs/sha256/<hh>/<hex>/data                                  bytes (manifests too)
//   repositories/<name>/_layers/sha256/<hex>/link                 blobs linked into the repo
//   repositories/<name>/_manifests/revisions/sha256/<hex>/link    manifests the repo holds
//   repositories/<name>/_manifests/tags/<tag>/current/link        what the tag points at
// Repository names nest (`a/b/c`): a directory is a repository when it has `_manifests` or
// `_layers`; names never have components starting with `_`, so those are never descended into.
import { createReadStream, existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { blobDataPath, REGISTRY_ROOT } from '../link/registry.js';
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

async function dirs(path: string): Promise<string[]> {
  try {
    return (await readdir(path, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

/** Read a link file: "sha256:<hex>" (no newline, but tolerate one). */
export async function readLink(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return isSha256Digest(text) ? text : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Links under `<dir>/sha256/<hex>/link`: each must hold the digest its directory is named for.
 * Returns the good digests; bad ones become problems.
 */
async function digestLinks(dir: string, repository: string, problems: BundleProblem[]): Promise<string[]> {
  const out: string[] = [];
  for (const hex of await dirs(join(dir, 'sha256'))) {
    const path = join(dir, 'sha256', hex, 'link');
    const digest = await readLink(path);
    if (!existsSync(path)) {
      problems.push({ kind: 'missing-link', repository, path, message: `${path}: link file missing` });
    } else if (!digest) {
      problems.push({ kind: 'bad-link', repository, path, message: `${path}: does not hold a sha256 digest` });
    } else if (digest !== `sha256:${hex}`) {
      problems.push({ kind: 'bad-link', repository, path, digest, message: `${path}: holds ${digest} but its directory names sha256:${hex}` });
    } else {
      out.push(digest);
    }
  }
  return out;
}

export async function scanRegistryLayout(path: string): Promise<RegistryScan> {
  const root = findRegistryRoot(path);
  if (!root) throw new BundleError(`${path} is not a registry layout (no ${REGISTRY_ROOT} inside)`);
  const problems: BundleProblem[] = [];
  const repositories = new Map<string, BundleRepository>();
  const reposDir = join(root, REGISTRY_ROOT, 'repositories');

  const walk = async (dir: string): Promise<void> => {
    const children = await dirs(dir);
    if (children.includes('_manifests') || children.includes('_layers')) {
      const name = relative(reposDir, dir).split(sep).join('/');
      const repo = emptyRepository(name);
      for (const d of await digestLinks(join(dir, '_layers'), name, problems)) repo.blobs.add(d);
      for (const d of await digestLinks(join(dir, '_manifests', 'revisions'), name, problems)) repo.manifests.add(d);
      for (const tag of await dirs(join(dir, '_manifests', 'tags'))) {
        const linkPath = join(dir, '_manifests', 'tags', tag, 'current', 'link');
        const digest = await readLink(linkPath);
        if (digest) repo.tags.set(tag, digest);
        else if (existsSync(linkPath)) problems.push({ kind: 'bad-link', repository: name, path: linkPath, message: `${linkPath}: does not hold a sha256 digest` });
        else problems.push({ kind: 'missing-link', repository: name, path: linkPath, message: `tag ${name}:${tag} has no current/link` });
      }
      repositories.set(name, repo);
    }
    for (const c of children) if (!c.startsWith('_')) await walk(join(dir, c));
  };
  await walk(reposDir);
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

  dataPath(digest: string): string {
    return blobDataPath(this.path, digest);
  }

  async blobSize(digest: string): Promise<number | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    try {
      const st = await stat(this.dataPath(digest));
      return st.isFile() ? st.size : undefined;
    } catch {
      return undefined;
    }
  }

  openBlob(digest: string, start = 0, end?: number, opts?: ReadOptions): Readable {
    if (end !== undefined && end < start) return Readable.from([]);
    return createReadStream(this.dataPath(digest), { start, end, highWaterMark: opts?.chunkBytes ?? READ_CHUNK_BYTES });
  }

  async manifest(digest: string): Promise<StoredManifest | undefined> {
    if (this.manifests.has(digest)) return this.manifests.get(digest);
    let found: StoredManifest | undefined;
    const size = await this.blobSize(digest);
    if (size !== undefined) {
      if (size > MAX_MANIFEST_BYTES) throw new BundleError(`manifest ${digest} in ${this.path} is ${size} bytes, more than manifests may be`);
      const bytes = await readFile(this.dataPath(digest));
      found = { digest, mediaType: manifestMediaType(bytes, undefined, `manifest ${digest}`), bytes };
    }
    this.manifests.set(digest, found);
    return found;
  }

  async close(): Promise<void> {}
}
