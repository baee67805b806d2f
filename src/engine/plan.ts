// The plan: every unique blob once, looked up in the cache index (complete, partial at N, absent)
// as soon as an image needs it, so what is missing can start downloading while others resolve.
import type { Cache } from '../cache/cache.js';
import type { BlobNeed } from '../resolve/graph.js';

export interface PlannedBlob extends BlobNeed {
  /** Bytes already checkpointed in the partial area. */
  resumeFrom: number;
}

export class Plan {
  readonly cached: BlobNeed[] = [];
  readonly queue: PlannedBlob[] = [];
  totalBytes = 0;
  cachedBytes = 0;
  queuedBytes = 0;
  private readonly seen = new Set<string>();
  private readonly inCache = new Set<string>();

  /** `notNeeded`: blobs the output will not hold (a delta bundle's base has them). */
  constructor(
    private readonly cache: Cache,
    private readonly notNeeded: (digest: string) => boolean = () => false,
  ) {}

  /** Looks a blob up once: the planned download when it is missing, otherwise undefined. */
  async add(need: BlobNeed): Promise<PlannedBlob | undefined> {
    if (this.seen.has(need.digest)) return undefined;
    this.seen.add(need.digest);
    this.totalBytes += need.size;
    const { cache } = this;
    // checkBlob hashes a file whose identity changed since it was recorded; adoptBlob one never recorded.
    if (
      cache.hasBlob(need.digest) ||
      this.notNeeded(need.digest) ||
      (await cache.checkBlob(need.digest)) ||
      (await cache.adoptBlob(need.digest, need.size, need.mediaType))
    ) {
      this.cached.push(need);
      this.inCache.add(need.digest);
      this.cachedBytes += need.size;
      return undefined;
    }
    // Shares the need's sources array: repositories found later (another image) reach the download.
    const planned = { ...need, resumeFrom: cache.partial(need.digest)?.offset ?? 0 };
    this.queue.push(planned);
    this.queuedBytes += need.size;
    return planned;
  }

  /** Found in the cache (or not needed) when planned: nothing to download. */
  isCached(digest: string): boolean {
    return this.inCache.has(digest);
  }
}
