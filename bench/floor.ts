#!/usr/bin/env node
// The floor: GET every unique blob once with undici, `jobs` requests in flight, largest first,
// bodies counted and discarded (no hashing, no disk). Run as its own process so it is measured
// the same way as every other contender.
//   node dist/bench/floor.js BLOBS.json JOBS
// BLOBS.json: [{ "url": "http://host/v2/repo/blobs/sha256:…", "size": 123 }, …]
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';

interface Item {
  url: string;
  size: number;
}

async function main(): Promise<void> {
  const [listFile, jobsArg] = process.argv.slice(2);
  if (!listFile) throw new Error('usage: floor BLOBS.json [JOBS]');
  const jobs = Math.max(1, Number(jobsArg ?? 8));
  const items = (JSON.parse(await readFile(listFile, 'utf8')) as Item[]).slice().sort((a, b) => b.size - a.size);
  const dispatcher = new Agent({ connections: jobs, pipelining: 1, keepAliveTimeout: 10_000 });
  const started = performance.now();
  let bytes = 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      const res = await request(item.url, { method: 'GET', dispatcher, headersTimeout: 60_000, bodyTimeout: 60_000 });
      if (res.statusCode !== 200) {
        await res.body.text().catch(() => '');
        throw new Error(`GET ${item.url}: HTTP ${res.statusCode}`);
      }
      let n = 0;
      for await (const chunk of res.body) n += (chunk as Buffer).length;
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
