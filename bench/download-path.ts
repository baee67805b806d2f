#!/usr/bin/env node
// ocisave's download path alone over the bench's blob list: the scheduler, the download pool and
// the cache (locks, checkpoints, index records) a cold save fetches its blobs with, with nothing of
// the save around it (no references resolved, no manifests, no layout). Held against the CPU floor
// (clients.ts `hashed`: undici dispatch + sha256 + files) over the same blobs, it shows what the
// client costs; ocisave cold less this is what resolving and linking cost.
//   node dist/bench/download-path.js BLOBS.json JOBS CACHE_DIR
// BLOBS.json: [{ "url": "http://host/v2/repo/blobs/sha256:…", "size": 123 }, …]
// Prints {"blobs", "bytes", "seconds"}; fails unless every blob was fetched and verified.
import { readFile } from 'node:fs/promises';
import { Cache } from '../src/cache/cache.js';
import { DownloadPool } from '../src/engine/pool.js';
import { Downloads } from '../src/engine/scheduler.js';
import { DEFAULT_HASHER } from '../src/hash/hasher.js';
import { RegistryClient } from '../src/registry/client.js';
import { setDownloadFlags } from '../src/engine/v8-flags.js';
import { EngineEvents } from '../src/util/events.js';

interface Item {
  url: string;
  size: number;
}

async function main(): Promise<void> {
  // As the CLI runs a save (src/cli/main.ts): llhttp on Liftoff, the download threads' old space.
  await setDownloadFlags(DEFAULT_HASHER);
  const [listFile, jobsArg, cacheDir] = process.argv.slice(2);
  if (!listFile || !cacheDir) throw new Error('usage: download-path BLOBS.json JOBS CACHE_DIR');
  const jobs = Math.max(1, Number(jobsArg ?? 8));
  const items = JSON.parse(await readFile(listFile, 'utf8')) as Item[];
  const cache = Cache.open(cacheDir);
  // As a save opens them (engine/pipeline.ts): the connection ceiling, adaptive connections.
  const client = new RegistryClient({ plainHttp: true, connections: jobs + 4 });
  const pool = new DownloadPool(jobs);
  const downloads = new Downloads({ cache, client, pool, jobs, hasher: DEFAULT_HASHER, events: new EngineEvents(), failFast: true });
  const started = performance.now();
  for (const item of items) {
    const u = new URL(item.url);
    const m = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(u.pathname);
    if (!m) throw new Error(`not a blob URL: ${item.url}`);
    downloads.add({ digest: m[2]!, size: item.size, mediaType: 'application/octet-stream', sources: [{ registry: u.host, repository: m[1]! }], resumeFrom: 0 });
  }
  const report = await downloads.finish();
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  await client.close();
  await cache.close();
  const failed = [...report.failed].map(([digest, f]) => `${digest}: ${f.message}`);
  if (failed.length || report.downloaded !== items.length) throw new Error(`${report.downloaded} of ${items.length} blobs downloaded; ${failed.join('; ')}`);
  process.stdout.write(`${JSON.stringify({ blobs: items.length, bytes: report.fetchedBytes, seconds })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`download-path: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
