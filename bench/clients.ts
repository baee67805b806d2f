#!/usr/bin/env node
// Bare-client loops: GET every blob of a list, `jobs` requests in flight, largest first, with the
// least code a client can have, so the HTTP client's own share of ocisave's CPU is visible.
//   node dist/bench/clients.js MODE BLOBS.json JOBS [DIR]
//   http      node:http, one keep-alive Agent of JOBS sockets, bodies discarded
//   dispatch  undici's dispatch() with callbacks (what workers/download.ts uses), bodies discarded
//   hashed    dispatch + sha256 (the default hasher, or --hasher wasm as 5th argument) + each body
//             written to a file in DIR in ~1 MiB writes: the floor ocisave cold is held against
// curl runs as its own process (curlConfig below: one `curl --parallel`), measured the same way.
// Each prints {"blobs", "bytes", "seconds"} and fails when a body's length is not the blob's size.
import http from 'node:http';
import { mkdir, open, readFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import { Agent } from '../src/registry/http.js';
import { createHasher, DEFAULT_HASHER, type Hasher, type HasherKind } from '../src/hash/hasher.js';

interface Item {
  url: string;
  size: number;
}

/** What one body is turned into; a returned promise pauses the connection until it settles. */
interface Sink {
  data(chunk: Buffer): Promise<void> | undefined;
  end(): Promise<void>;
}

type Fetch = (item: Item, sink: Sink) => Promise<number>;

export const CLIENT_MODES = ['http', 'dispatch', 'hashed'] as const;
type Mode = (typeof CLIENT_MODES)[number];

/** The same coalescing as workers/download.ts: network chunks (~64 KiB) become ~1 MiB writes. */
const WRITE_BYTES = 1 << 20;

/**
 * `curl --parallel -K FILE`: every blob to /dev/null, its status and length on stdout (one line
 * each). `header` is sent with every URL (curl's config applies it to all of them).
 */
export function curlConfig(items: readonly Item[], header?: string): string {
  return (header ? `header = "${header}"\n` : '') + items.map((i) => `url = "${i.url}"\noutput = "/dev/null"\n`).join('');
}

export const CURL_ARGS = (jobs: number, config: string) => ['--parallel', '--parallel-max', String(jobs), '--silent', '--show-error', '--fail', '-w', '%{http_code} %{size_download}\\n', '-K', config];

function httpFetch(jobs: number): Fetch {
  const agent = new http.Agent({ keepAlive: true, maxSockets: jobs });
  return (item, sink) =>
    new Promise((resolve, reject) => {
      http
        .get(item.url, { agent }, (res) => {
          if (res.statusCode !== 200) {
            res.resume();
            reject(new Error(`GET ${item.url}: HTTP ${res.statusCode}`));
            return;
          }
          let n = 0;
          // Bodies are discarded in this mode: the sink never asks to wait.
          res.on('data', (chunk: Buffer) => {
            n += chunk.length;
            void sink.data(chunk);
          });
          res.on('end', () => sink.end().then(() => resolve(n), reject));
          res.on('error', reject);
        })
        .on('error', reject);
    });
}

function dispatchFetch(jobs: number): Fetch {
  const agent = new Agent({ connections: jobs, pipelining: 1, keepAliveTimeout: 10_000 });
  return (item, sink) =>
    new Promise((resolve, reject) => {
      const { origin, pathname } = new URL(item.url);
      let n = 0;
      let status = 0;
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart() {},
        onResponseStart(_c, statusCode) {
          status = statusCode;
        },
        onResponseData(controller, chunk) {
          n += chunk.length;
          if (status !== 200) return;
          const wait = sink.data(chunk);
          if (!wait) return;
          controller.pause();
          wait.then(() => controller.resume(), (err: Error) => controller.abort(err));
        },
        onResponseEnd() {
          if (status !== 200) reject(new Error(`GET ${item.url}: HTTP ${status}`));
          else sink.end().then(() => resolve(n), reject);
        },
        onResponseError(_c, err) {
          reject(err);
        },
      };
      agent.dispatch({ origin, path: pathname, method: 'GET', headers: {} }, handler);
    });
}

const discard: Sink = { data: () => undefined, end: () => Promise.resolve() };

/** sha256 while streaming, and the bytes to a file, one ~1 MiB write in flight while more arrive. */
async function hashedSink(hasherKind: HasherKind, path: string, item: Item): Promise<Sink> {
  const hasher: Hasher = await createHasher(hasherKind);
  const fh: FileHandle = await open(path, 'w');
  let chunks: Buffer[] = [];
  let pending = 0;
  let at = 0;
  let inFlight: Promise<unknown> = Promise.resolve();
  const write = async () => {
    await inFlight;
    const batch = chunks;
    const position = at;
    at += pending;
    [chunks, pending] = [[], 0];
    inFlight = fh.writev(batch, position);
  };
  return {
    data(chunk) {
      hasher.update(chunk);
      chunks.push(chunk);
      pending += chunk.length;
      return pending >= WRITE_BYTES ? write() : undefined;
    },
    async end() {
      if (pending) await write();
      await inFlight;
      await fh.close();
      // The URL's last segment is the blob's digest: checked, as ocisave checks it.
      const digest = hasher.digest();
      if (!item.url.endsWith(`/${digest}`)) throw new Error(`GET ${item.url}: content hashes to ${digest}`);
      if (item.size !== at) throw new Error(`${path}: wrote ${at} bytes, expected ${item.size}`);
    },
  };
}

async function main(): Promise<void> {
  const [mode, listFile, jobsArg, dir, hasherArg] = process.argv.slice(2) as [Mode, string, string?, string?, string?];
  if (!CLIENT_MODES.includes(mode) || !listFile) throw new Error(`usage: clients ${CLIENT_MODES.join('|')} BLOBS.json [JOBS] [DIR] [HASHER]`);
  if (mode === 'hashed' && !dir) throw new Error('hashed needs a DIR to write to');
  const jobs = Math.max(1, Number(jobsArg ?? 8));
  const hasherKind = (hasherArg ?? DEFAULT_HASHER) as HasherKind;
  const items = (JSON.parse(await readFile(listFile, 'utf8')) as Item[]).slice().sort((a, b) => b.size - a.size);
  if (dir) await mkdir(dir, { recursive: true });
  const fetch = mode === 'http' ? httpFetch(jobs) : dispatchFetch(jobs);
  const started = performance.now();
  let bytes = 0;
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      const item = items[index]!;
      const sink = mode === 'hashed' ? await hashedSink(hasherKind, join(dir!, String(index)), item) : discard;
      const n = await fetch(item, sink);
      if (n !== item.size) throw new Error(`GET ${item.url}: ${n} bytes, expected ${item.size}`);
      bytes += n;
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, worker));
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(`${JSON.stringify({ blobs: items.length, bytes, seconds })}\n`);
}

if (process.argv[1]?.endsWith('clients.js')) {
  main()
    .then(() => process.exit(0))
    .catch((err: unknown) => {
      process.stderr.write(`clients: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}
