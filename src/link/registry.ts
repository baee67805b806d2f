// The distribution registry's storage layout (registry/storage/paths.go), which `registry:2` or
// `docker-registry` serves when the directory is its filesystem root — sealer's bundle format.
// An existing layout is added to, not replaced: several saves can fill one bundle. Blob data is
// placed before any link names it, and tags are written last, so a registry serving the directory
// mid-write never sees a tag whose content is missing.
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { hexOf } from '../cache/cache.js';
import { blobsOf, leafManifests, walkNodes } from '../resolve/graph.js';
import { placeBlob, stagingPath } from './files.js';
import type { LinkOptions, LinkResult } from './index.js';

export const REGISTRY_ROOT = 'docker/registry/v2';

export function blobDataPath(root: string, digest: string): string {
  const hex = hexOf(digest);
  return join(root, REGISTRY_ROOT, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

export function repositoryPath(root: string, repository: string): string {
  return join(root, REGISTRY_ROOT, 'repositories', repository);
}

async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = stagingPath(path);
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** A link file holds the digest, with no newline. */
function linkFile(dir: string, digest: string): Promise<void> {
  return writeFileAtomic(join(dir, 'link'), digest);
}

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
  const placed = new Set<string>();
  const inBase = since ? baseHolds(since) : () => false;

  const placeCached = async (digest: string) => {
    if (placed.has(digest)) return;
    placed.add(digest);
    if (inBase(digest)) return;
    const how = await placeBlob(cache.blobPath(digest), blobDataPath(out, digest));
    if (how === 'linked') result.linked++;
    else if (how === 'copied') result.copied++;
  };
  const placeBytes = async (digest: string, bytes: Buffer) => {
    if (placed.has(digest)) return;
    placed.add(digest);
    if (inBase(digest)) return;
    await writeFileAtomic(blobDataPath(out, digest), bytes);
    result.written++;
  };

  for (const image of graph.images) {
    const repo = repositoryPath(out, image.ref.repository);
    for (const m of leafManifests(image.root)) {
      for (const d of blobsOf(m)) {
        await placeCached(d.digest);
        await linkFile(join(repo, '_layers', 'sha256', hexOf(d.digest)), d.digest);
      }
    }
    // Children before parents, so an index's revision appears after those of its manifests.
    for (const node of [...walkNodes(image.root)].reverse()) {
      await placeBytes(node.digest, node.bytes);
      await linkFile(join(repo, '_manifests', 'revisions', 'sha256', hexOf(node.digest)), node.digest);
    }
    if (image.ref.tag) {
      const tagDir = join(repo, '_manifests', 'tags', image.ref.tag);
      await linkFile(join(tagDir, 'index', 'sha256', hexOf(image.root.digest)), image.root.digest);
      await linkFile(join(tagDir, 'current'), image.root.digest);
    }
  }
  return result;
}
