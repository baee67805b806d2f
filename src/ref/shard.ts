// `--shard K/N`: a deterministic partition of a fleet by repository, so N processes or machines
// can each take one part. Every reference of a repository lands in the same shard (its blobs are
// mostly shared, so one shard downloads them once); the hash is stable across runs, machines and
// input order. Imports only the leaves src/hash and src/util.
import { UsageError } from '../util/errors.js';
import { sha256Hex } from '../hash/hasher.js';

export interface Shard {
  /** 1-based, as the user writes it. */
  index: number;
  count: number;
}

// More shards than this is a typo, not a fleet: 4096 machines would each hold a handful of repositories.
const MAX_SHARDS = 4096;

/** "2/3" → {index: 2, count: 3}; throws a one-line message for anything else. */
export function parseShard(value: string): Shard {
  const m = /^(\d{1,5})\/(\d{1,5})$/.exec(value.trim());
  if (!m) throw new UsageError(`--shard "${value}": expected K/N, e.g. 1/3`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || count > MAX_SHARDS) throw new UsageError(`--shard "${value}": N must be 1 to ${MAX_SHARDS}`);
  if (index < 1 || index > count) throw new UsageError(`--shard "${value}": K must be 1 to ${count}`);
  return { index, count };
}

/**
 * The shard (1-based) a repository belongs to: the first 8 bytes of sha256("registry/repository"),
 * as an unsigned big-endian integer, modulo N, plus 1. Registry and repository as normalised
 * references name them (docker.io/library/alpine), so "alpine" and "docker.io/library/alpine" agree.
 */
export function shardOf(registry: string, repository: string, count: number): number {
  const h = Buffer.from(sha256Hex(`${registry}/${repository}`), 'hex');
  return Number(h.readBigUInt64BE(0) % BigInt(count)) + 1;
}

export function inShard(shard: Shard, registry: string, repository: string): boolean {
  return shardOf(registry, repository, shard.count) === shard.index;
}
