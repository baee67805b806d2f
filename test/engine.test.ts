// The download engine against a real registry: processes sharing one cache, segmented
// downloads, both hashers, memory that stays flat whatever the blob size, and a registry layout
// linked while blobs still download.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, ocisave, startCli, summaryOf } from './support/cli.js';
import { startFaultProxy } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { MT, pushBlobStream, pushImage, randomLayerStream, seedStandardFixtures, type FixtureSet } from './fixtures/index.js';
import { blobDataPath, REGISTRY_ROOT } from '../src/link/registry.js';

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
const MiB = 1024 * 1024;

/** One image whose single layer is `bytes` of incompressible data, pushed streaming. */
async function pushRandomImage(repo: string, bytes: number): Promise<{ ref: string; layer: string }> {
  const { stream, result } = randomLayerStream({ seed: repo, bytes, path: 'data/blob.bin' });
  const blob = await pushBlobStream(source.url, repo, stream, MT.dockerLayer);
  const { diffId } = await result;
  await pushImage(source.url, repo, 'latest', { format: 'docker', layers: [{ digest: blob.digest, size: blob.size, diffId, repo }] });
  return { ref: `${source.host}/${repo}:latest`, layer: blob.digest };
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-engine-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 24 * MiB });
});

afterAll(async () => {
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('download engine', () => {
  it('two processes saving overlapping sets into one cache both succeed and fetch each blob once', async () => {
    const cache = join(work, 'shared-cache');
    const a = fx.references.slice(0, 7);
    const b = fx.references.slice(3);
    const run = (refs: string[], out: string) => collect(startCli(['save', ...refs, '-o', join(work, out), '--cache', cache, '--platform', 'all', '--json']));
    const [ra, rb] = await Promise.all([run(a, 'a'), run(b, 'b')]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    const union = new Set([...a, ...b].flatMap((r) => fx.refs[r]!.blobs));
    const unionBytes = [...union].reduce((n, d) => n + fx.blobs[d]!.size, 0);
    const sa = summaryOf(ra);
    const sb = summaryOf(rb);
    expect(sa.downloaded.bytes + sb.downloaded.bytes).toBe(unionBytes);
    expect(sa.downloaded.blobs + sb.downloaded.blobs).toBe(union.size);
  });

  it('uses verified blob files whose index records were lost, instead of fetching them again', async () => {
    const cache = join(work, 'cache-lost-index');
    const refs = fx.references.slice(0, 4);
    const first = await ocisave(['save', ...refs, '-o', join(work, 'lost-1'), '--cache', cache, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(summaryOf(first).downloaded.bytes).toBeGreaterThan(0);
    // As after a crash between a blob's rename into place and its index commit, for every blob.
    await rm(join(cache, 'index.lmdb'), { recursive: true, force: true });
    const second = await ocisave(['save', ...refs, '-o', join(work, 'lost-2'), '--cache', cache, '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect(summaryOf(second).downloaded).toEqual({ blobs: 0, bytes: 0 });
  });

  it('downloads the blobs of resolved images while another manifest is still on its way', async () => {
    const proxy = await startFaultProxy(source.url);
    try {
      const [slow, ...others] = fx.references.filter((r) => !r.includes('big/blob')).slice(0, 4).map((r) => r.replace(fx.registry, proxy.host));
      const { repository, tag } = fx.refs[slow!.replace(proxy.host, fx.registry)]!;
      // The slow manifest is held until a blob of another image has been downloaded: a save that
      // waited for every manifest first would never get there (and fail on the fallback below).
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const fallback = setTimeout(release, 90_000);
      proxy.setFaults([{ method: 'GET', path: `/v2/${repository}/manifests/${tag}$`, holdUntil: held }]);
      const child = startCli(['save', slow!, ...others, '-o', join(work, 'overlap'), '--cache', join(work, 'cache-overlap'), '--json']);
      let pending = '';
      child.stderr!.on('data', (d) => {
        pending += d;
        if (/"type":"blob-done"/.test(pending)) release();
        pending = pending.slice(pending.lastIndexOf('\n') + 1);
      });
      const r = await collect(child);
      clearTimeout(fallback);
      expect(r.code, r.stderr).toBe(0);
      const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; input?: string });
      const slowResolved = events.findIndex((e) => e.type === 'resolved' && e.input === slow);
      const firstBlobDone = events.findIndex((e) => e.type === 'blob-done');
      expect(slowResolved).toBeGreaterThan(0);
      expect(firstBlobDone).toBeGreaterThanOrEqual(0);
      expect(firstBlobDone).toBeLessThan(slowResolved);
    } finally {
      await proxy.stop();
    }
  });

  it('links a new registry layout image by image while blobs download, under a staging name until the save succeeds', async () => {
    const proxy = await startFaultProxy(source.url);
    try {
      const big = fx.references.find((r) => r.includes('big/blob'))!;
      const fast = fx.references.filter((r) => !r.includes('big/blob')).slice(0, 3);
      const bigLayer = fx.refs[big]!.layers![0]!;
      proxy.setFaults([{ method: 'GET', path: `/v2/${fx.refs[big]!.repository}/blobs/${bigLayer}$`, delayMs: 3000 }]);
      const parent = join(work, 'staged');
      const out = join(parent, 'bundle');
      const tagLink = (root: string, ref: string) => join(root, REGISTRY_ROOT, 'repositories', fx.refs[ref]!.repository, '_manifests', 'tags', fx.refs[ref]!.tag!, 'current', 'link');
      const stagings = async () => (await readdir(parent).catch(() => [] as string[])).filter((n) => n.startsWith('.bundle.partial-')).map((n) => join(parent, n));
      const child = startCli(['save', ...[big, ...fast].map((r) => r.replace(fx.registry, proxy.host)), '-o', out, '--cache', join(work, 'cache-staged'), '--json']);
      const result = collect(child);
      // While the big layer is held back, the other images appear complete in the staging layout only.
      let seen: { staging: string; outExists: boolean; bigTagged: boolean } | undefined;
      while (!seen && child.exitCode === null) {
        for (const staging of await stagings()) {
          if (fast.every((r) => existsSync(tagLink(staging, r)))) seen = { staging, outExists: existsSync(out), bigTagged: existsSync(tagLink(staging, big)) };
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const r = await result;
      expect(r.code, r.stderr).toBe(0);
      expect(seen, 'the fast images were never seen linked before the save ended').toBeDefined();
      expect(seen!.outExists).toBe(false);
      expect(seen!.bigTagged).toBe(false);
      for (const ref of [big, ...fast]) expect(existsSync(tagLink(out, ref)), ref).toBe(true);
      expect(await sha256File(blobDataPath(out, bigLayer))).toBe(bigLayer);
      expect(await stagings()).toEqual([]);

      // A save that fails leaves neither an output nor its staging layout behind.
      proxy.setFaults([{ method: 'GET', path: `/v2/${fx.refs[big]!.repository}/blobs/${bigLayer}$`, status: 404 }]);
      const failedOut = join(parent, 'failed');
      const failed = await ocisave(['save', ...[...fast, big].map((r) => r.replace(fx.registry, proxy.host)), '-o', failedOut, '--cache', join(work, 'cache-staged-fail'), '--json']);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain(bigLayer);
      expect(existsSync(failedOut)).toBe(false);
      expect((await readdir(parent)).filter((n) => n.startsWith('.failed.'))).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it('closes the download pool safely at any moment of its threads starting up', async () => {
    // A save that needs no download closes the pool while its threads may still be starting up.
    // Both ways a terminated thread took the whole process down were seen in CI: an abort while it
    // loaded lmdb's native addon, and a SIGSEGV while V8 compiled WebAssembly for it (see http.ts).
    const pool = new URL('../dist/src/engine/pool.js', import.meta.url).href;
    const script = `import { DownloadPool } from ${JSON.stringify(pool)};
      for (let i = 0; i < 30; i++) {
        const p = new DownloadPool(8);
        p.start();
        await new Promise((r) => setTimeout(r, (i * 7) % 100));
        await p.close();
      }`;
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], (err, _out, stderr) => resolve({ code: err ? (err.code as number | null) ?? null : 0, stderr }));
    });
    expect(r.code, r.stderr).toBe(0);
  });

  it('loads the download worker without compiling WebAssembly in the background', async () => {
    // The crash above happens once in hundreds of runs; its cause can be checked every time.
    const worker = new URL('../dist/workers/download.js', import.meta.url).href;
    const script = `import { Worker } from 'node:worker_threads';
      const w = new Worker(\`
        let compiles = 0;
        for (const k of ['compile', 'instantiate']) {
          const f = WebAssembly[k];
          WebAssembly[k] = (...a) => { compiles++; return f(...a); };
        }
        Promise.all([import('node:worker_threads'), import(${JSON.stringify(worker)})])
          .then(([{ parentPort }]) => setTimeout(() => parentPort.postMessage(compiles), 100));
      \`, { eval: true });
      // The module itself posts a "loaded" message first.
      w.on('message', (n) => { if (typeof n === 'number') { console.log(n); w.terminate(); } });`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['--input-type=module', '-e', script], (err, stdout, stderr) => (err ? reject(new Error(stderr || String(err))) : resolve(stdout)));
    });
    expect(out.trim()).toBe('0');
  });

  it('splits a big blob into ranges and verifies the whole digest', async () => {
    const big = fx.references.find((r) => r.includes('big/blob'))!;
    const layer = fx.refs[big]!.layers![0]!;
    for (const [segment, hasher] of [['4', 'node'], ['0', 'wasm'], ['3', 'wasm']] as const) {
      const out = join(work, `seg-${segment}-${hasher}`);
      const r = await ocisave(['save', big, '-o', out, '--cache', join(work, `cache-seg-${segment}-${hasher}`), '--segment-size', segment, '--hasher', hasher, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(summaryOf(r).downloaded.bytes).toBe(fx.refs[big]!.blobBytes);
      expect(await sha256File(blobDataPath(out, layer))).toBe(layer);
    }
  });

  // Saves 416 MiB twice over (and pushes it once): minutes on a loaded 2-core machine (CI), so a longer safety net.
  it('keeps peak memory flat whatever the blob size', { timeout: 420_000 }, async () => {
    // Both sizes split into at least `jobs` segments, so both run the same number of streams.
    const small = await pushRandomImage('mem/small', 32 * MiB);
    const large = await pushRandomImage('mem/large', 384 * MiB);
    const peak = async (ref: string, segment: string) => {
      const r = await ocisave(['save', ref, '-o', join(work, `mem-${segment}-${ref.length}`), '--cache', join(work, `cache-mem-${segment}-${ref.length}`), '--segment-size', segment, '--json']);
      expect(r.code, r.stderr).toBe(0);
      return summaryOf(r).peakRssBytes as number;
    };
    for (const segment of ['0', '4']) {
      const [s, l] = [await peak(small.ref, segment), await peak(large.ref, segment)];
      // 352 MiB more data may cost a few buffers' worth of memory (and GC slack when the machine
      // is busy), far from what holding the blob would cost.
      expect(l - s, `segment ${segment}: ${s} vs ${l}`).toBeLessThan(96 * MiB);
    }
  });
});
