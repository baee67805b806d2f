#!/usr/bin/env node
// The floor: GET every unique blob once with undici, `jobs` requests in flight, largest first,
// bodies counted and discarded (no hashing, no disk) or, given DIR, each written to a file there
// in ~1 MiB writes (no hashing, no index, no layout): what any save to this disk must pay.
// Run as its own process so it is measured the same way as every other contender.
//   node dist/bench/floor.js BLOBS.json JOBS [DIR]
// BLOBS.json: [{ "url": "http://host/v2/repo/blobs/sha256:…", "size": 123 }, …]
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from '../src/registry/http.js';

interface Item {
  url: string;
  size: number;
}

const WRITE_BYTES = 1 << 20;

async function flush(file: FileHandle, chunks: Buffer[]): Promise<number> {
  if (chunks.length) await file.writev(chunks);
  return 0;
}

async function main(): Promise<void> {
  const [listFile, jobsArg, dir] = process.argv.slice(2);
  if (!listFile) throw new Error('usage: floor BLOBS.json [JOBS] [DIR]');
  if (dir) await mkdir(dir, { recursive: true });
  const jobs = Math.max(1, Number(jobsArg ?? 8));
  const items = (JSON.parse(await readFile(listFile, 'utf8')) as Item[]).slice().sort((a, b) => b.size - a.size);
  const dispatcher = new Agent({ connections: jobs, pipelining: 1, keepAliveTimeout: 10_000 });
  const started = performance.now();
  let bytes = 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      const item = items[index]!;
      const res = await request(item.url, { method: 'GET', dispatcher, headersTimeout: 60_000, bodyTimeout: 60_000 });
      if (res.statusCode !== 200) {
        await res.body.text().catch(() => '');
        throw new Error(`GET ${item.url}: HTTP ${res.statusCode}`);
      }
      const file = dir ? await open(join(dir, String(index)), 'w') : undefined;
      let n = 0;
      let batch: Buffer[] = [];
      let batchBytes = 0;
      for await (const chunk of res.body) {
        n += (chunk as Buffer).length;
        if (!file) continue;
        batch.push(chunk as Buffer);
        batchBytes += (chunk as Buffer).length;
        if (batchBytes >= WRITE_BYTES) [batch, batchBytes] = [[], await flush(file, batch)];
      }
      if (file) {
        await flush(file, batch);
        await file.close();
      }
      if (n !== item.size) throw new Error(`GET ${item.url}: ${n} bytes, expected ${item.size}`);
      bytes += n;
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  const seconds = (performance.now() - started) / 1000;
  await dispatcher.close();
  process.stdout.write(`${JSON.stringify({ blobs: items.length, bytes, seconds })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`floor: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
