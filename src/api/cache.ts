// The blob cache's maintenance calls (ocisave cache ls|du|verify|prune), each on the cache at
// `cacheDir` (default defaultCacheDir()), opened and closed around the call.
import { Cache, defaultCacheDir } from '../cache/cache.js';
import { parseDuration } from '../cache/duration.js';
import { cacheUsage, listCache, pruneCache, verifyCache, type CacheListing, type CacheUsage, type CacheVerifyReport, type PruneReport } from '../cache/maintenance.js';
import { SCHEMAS, versioned } from './schema.js';

export interface CacheRequest {
  cacheDir?: string;
}

export type CacheLsResult = { schema: typeof SCHEMAS.cacheLs } & CacheListing;
export type CacheDuResult = { schema: typeof SCHEMAS.cacheDu } & CacheUsage;
export type CacheVerifyResult = { schema: typeof SCHEMAS.cacheVerify } & CacheVerifyReport;
export type CachePruneResult = { schema: typeof SCHEMAS.cachePrune } & PruneReport;

async function withCache<T>(r: CacheRequest, fn: (cache: Cache) => Promise<T>, repair = false): Promise<T> {
  // Only verify repairs a cache directory that is a link (the link removed, never its target); the others refuse it.
  const cache = Cache.open(r.cacheDir ?? defaultCacheDir(), { replaceLinkedDirs: repair });
  try {
    return await fn(cache);
  } finally {
    await cache.close();
  }
}

/** Cached blobs (size, media type, last use) and partial downloads. */
export function cacheLs(r: CacheRequest = {}): Promise<CacheLsResult> {
  return withCache(r, async (c) => versioned(SCHEMAS.cacheLs, await listCache(c)));
}

/** Disk used by the cache. */
export function cacheDu(r: CacheRequest = {}): Promise<CacheDuResult> {
  return withCache(r, async (c) => versioned(SCHEMAS.cacheDu, await cacheUsage(c)));
}

/** Re-hash every blob, drop corrupt ones, repair what interrupted downloads left. */
export function cacheVerify(r: CacheRequest & { jobs?: number } = {}): Promise<CacheVerifyResult> {
  return withCache(r, async (c) => versioned(SCHEMAS.cacheVerify, await verifyCache(c, { jobs: r.jobs })), true);
}

/** Remove blobs not used for `olderThan` (milliseconds, or a duration such as "30d"). */
export function cachePrune(r: CacheRequest & { olderThan: number | string; dryRun?: boolean }): Promise<CachePruneResult> {
  const olderThanMs = typeof r.olderThan === 'string' ? parseDuration(r.olderThan) : r.olderThan;
  return withCache(r, async (c) => versioned(SCHEMAS.cachePrune, await pruneCache(c, { olderThanMs, dryRun: r.dryRun })));
}
