// resolve(): the dry run. Every input → its digest, platforms, size and how much of it the cache
// lacks; nothing is downloaded but manifests. `lock` pins what was resolved for a later save.
import type { Cache } from '../cache/cache.js';
import { resolveGraph } from '../engine/pipeline.js';
import { describeImage, type ImageRow } from '../resolve/describe.js';
import { blobsOf, leafManifests, walkNodes, type Failure, type ImageGraph } from '../resolve/graph.js';
import { lockFromGraph, writeLockFile } from '../resolve/lockfile.js';
import { stamp } from './events.js';
import { gatherInputs, type InputOptions } from './inputs.js';
import { credentialsOf, fetchOptionsOf, platformsOf, type FetchRequest } from './options.js';
import { DEFAULT_PLATFORMS } from './platforms.js';
import { SCHEMAS, versioned } from './schema.js';
import { UsageError } from '../util/errors.js';

export interface ResolveRequest extends Omit<FetchRequest, 'keepGoing' | 'jobs' | 'hasher' | 'segmentSize'>, Omit<InputOptions, 'lock'> {
  /** Write a lock file here: each input pinned to registry/repository@digest (only when every input resolved). */
  lock?: string;
}

export interface ResolvedRow extends ImageRow {
  manifests: number;
  blobs: number;
  bytes: number;
  /** Bytes of this image's blobs that are not complete in the cache. */
  missingBytes: number;
}

export interface ResolveReport {
  images: ResolvedRow[];
  total: { images: number; manifests: number; blobs: number; bytes: number; missingBlobs: number; missingBytes: number };
  failures: Failure[];
  /** The lock file written, if one was asked for and every input resolved. */
  lock?: string;
}

export type ResolveResult = { schema: typeof SCHEMAS.resolve } & ResolveReport;

/** Resolves every input (failures are listed, not thrown); platforms default to all. */
export async function resolve(r: ResolveRequest): Promise<ResolveResult> {
  const g = await gatherInputs({ ...r, lock: undefined });
  if (g.total === 0) throw new UsageError('nothing to resolve: give references as arguments or -f FILE');
  for (const message of g.collected.warnings) r.onEvent?.(stamp({ type: 'warning', message }));
  const platforms = platformsOf(r.platforms, DEFAULT_PLATFORMS);
  const resolved = await resolveGraph(g.refs, {
    ...fetchOptionsOf({ ...r, keepGoing: true }, platforms, credentialsOf(r, g.registries, g.collected.credentials)),
    tagSets: g.tagSets,
    hostOptions: g.collected.hostOptions,
  });
  try {
    const report = reportOf(resolved.graph, resolved.cache);
    // A lock that silently lacks an image would make the later save "reproducibly" incomplete.
    if (r.lock && report.failures.length === 0) {
      await writeLockFile(r.lock, lockFromGraph(resolved.graph, platforms));
      report.lock = r.lock;
    }
    return versioned(SCHEMAS.resolve, report);
  } finally {
    await resolved.close();
  }
}

export function reportOf(graph: ImageGraph, cache: Cache): ResolveReport {
  const missing = (digest: string) => !cache.hasBlob(digest);
  const images = graph.images.map((image): ResolvedRow => {
    const blobs = new Map<string, number>();
    for (const m of leafManifests(image.root)) for (const d of blobsOf(m)) blobs.set(d.digest, d.size);
    let bytes = 0;
    let missingBytes = 0;
    for (const [digest, size] of blobs) {
      bytes += size;
      if (missing(digest)) missingBytes += size;
    }
    return { ...describeImage(image), manifests: [...walkNodes(image.root)].length, blobs: blobs.size, bytes, missingBytes };
  });
  const total = { images: images.length, manifests: 0, blobs: graph.blobs.size, bytes: 0, missingBlobs: 0, missingBytes: 0 };
  for (const row of images) total.manifests += row.manifests;
  for (const need of graph.blobs.values()) {
    total.bytes += need.size;
    if (missing(need.digest)) {
      total.missingBlobs++;
      total.missingBytes += need.size;
    }
  }
  return { images, total, failures: graph.failures };
}
