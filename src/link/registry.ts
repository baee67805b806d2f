// The distribution registry's storage layout (registry/storage/paths.go), which `registry:2` or
// `docker-registry` serves when the directory is its filesystem root — sealer's bundle format.
// An existing layout is added to, not replaced: several saves can fill one bundle. Blob data is
// placed before any link names it, and tags are written last (a tag's current link replaced
// through a temporary name), so a registry serving the directory mid-write never sees a tag whose
// content is missing.
import { existsSync } from 'node:fs';
import { rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { hexOf } from '../cache/cache.js';
import { blobsOf, leafManifests, walkNodes } from '../resolve/graph.js';
import { mapLimit } from '../engine/limit.js';
import { ensureDir, placeBlob, stagingPath } from './files.js';
import type { LinkOptions, LinkResult } from './index.js';

export const REGISTRY_ROOT = 'docker/registry/v2';

export function blobDataPath(root: string, digest: string): string {
  const hex = hexOf(digest);
  return join(root, REGISTRY_ROOT, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

export function repositoryPath(root: string, repository: string): string {
  return join(root, REGISTRY_ROOT, 'repositories', repository);
}

/**
 * A file whose path names its content (`blobs/…/<hex>/data`, and links such as
 * `_layers/…/<hex>/link` that always hold `sha256:<hex>`): created in place, once, without the
 * temporary name and rename. One that exists already is right unless a crash cut its write short,
 * which its size shows.
 */
async function writeContentAddressed(path: string, data: string | Buffer): Promise<void> {
  await ensureDir(dirname(path));
  try {
    await writeFile(path, data, { flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if ((await stat(path)).size !== Buffer.byteLength(data)) await writeFileAtomic(path, data);
  }
}

async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  await ensureDir(dirname(path));
  const tmp = stagingPath(path);
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Enough to keep the disk busy, few enough to stay far from the open-files limit. */
const FILES_AT_ONCE = 32;

/**
 * For a delta bundle (--since BASE): whether BASE already holds a blob's bytes. Those are left out
 * (and not downloaded); links and tags are still written, so BASE plus the delta (copied over it,
 * or pushed after it) is the full set.
 */
export function baseHolds(base: string): (digest: string) => boolean {
  if (!existsSync(join(base, REGISTRY_ROOT))) throw new Error(`--since ${base}: not a registry layout (no ${REGISTRY_ROOT} inside)`);
  return (digest) => existsSync(blobDataPath(base, digest));
}

export async function linkRegistryLayout({ graph, cache, out, since }: LinkOptions): Promise<LinkResult> {
  const result: LinkResult = { path: out, linked: 0, copied: 0, written: 0 };
  const inBase = since ? baseHolds(since) : () => false;

  // Everything is written in four waves, each in parallel, each file once: blob data, manifest
  // data, then the links naming them, then the tags.
  const blobs = new Set<string>();
  const manifests = new Map<string, Buffer>();
  const links = new Map<string, string>();
  const tags = new Map<string, string>();
  for (const image of graph.images) {
    const repo = repositoryPath(out, image.ref.repository);
    for (const m of leafManifests(image.root)) {
      for (const d of blobsOf(m)) {
        blobs.add(d.digest);
        links.set(join(repo, '_layers', 'sha256', hexOf(d.digest), 'link'), d.digest);
      }
    }
    for (const node of walkNodes(image.root)) {
      manifests.set(node.digest, node.bytes);
      links.set(join(repo, '_manifests', 'revisions', 'sha256', hexOf(node.digest), 'link'), node.digest);
    }
    if (image.ref.tag) {
      const tagDir = join(repo, '_manifests', 'tags', image.ref.tag);
      links.set(join(tagDir, 'index', 'sha256', hexOf(image.root.digest), 'link'), image.root.digest);
      tags.set(join(tagDir, 'current', 'link'), image.root.digest);
    }
  }

  await mapLimit([...blobs].filter((d) => !inBase(d)), FILES_AT_ONCE, async (digest) => {
    const how = await placeBlob(cache.blobPath(digest), blobDataPath(out, digest));
    if (how === 'linked') result.linked++;
    else if (how === 'copied') result.copied++;
  });
  await mapLimit([...manifests].filter(([d]) => !inBase(d)), FILES_AT_ONCE, async ([digest, bytes]) => {
    await writeContentAddressed(blobDataPath(out, digest), bytes);
    result.written++;
  });
  // A link file holds the digest, with no newline. A tag's current link changes: it is replaced whole.
  await mapLimit([...links], FILES_AT_ONCE, ([path, digest]) => writeContentAddressed(path, digest));
  await mapLimit([...tags], FILES_AT_ONCE, ([path, digest]) => writeFileAtomic(path, digest));
  return result;
}
