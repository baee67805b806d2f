// The plan: every unique blob once, looked up in the cache index (complete, partial at N, absent),
// what is missing queued largest first so the long transfers start early.
import type { Cache } from '../cache/cache.js';
import type { BlobNeed, ImageGraph } from '../resolve/graph.js';

export interface PlannedBlob extends BlobNeed {
  /** Bytes already checkpointed in the partial area. */
  resumeFrom: number;
}

export interface Plan {
  cached: BlobNeed[];
  queue: PlannedBlob[];
  totalBytes: number;
  cachedBytes: number;
  queuedBytes: number;
}

/** `notNeeded`: blobs the output will not hold (a delta bundle's base has them). */
export async function planDownloads(graph: ImageGraph, cache: Cache, notNeeded: (digest: string) => boolean = () => false): Promise<Plan> {
  const plan: Plan = { cached: [], queue: [], totalBytes: 0, cachedBytes: 0, queuedBytes: 0 };
  for (const need of graph.blobs.values()) {
    plan.totalBytes += need.size;
    if (cache.hasBlob(need.digest) || notNeeded(need.digest) || (await cache.adoptBlob(need.digest, need.size, need.mediaType))) {
      plan.cached.push(need);
      plan.cachedBytes += need.size;
    } else {
      plan.queue.push({ ...need, resumeFrom: cache.partial(need.digest)?.offset ?? 0 });
      plan.queuedBytes += need.size;
    }
  }
  plan.queue.sort((a, b) => b.size - a.size);
  return plan;
}
