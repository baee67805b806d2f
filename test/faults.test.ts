// Faults between ocisave and a real registry, injected by a proxy: each is survived and the
// saved bundle is byte-identical to one saved without faults. A blob that stays corrupt never
// enters the cache. A SIGKILLed save resumes with a Range request for only the remainder.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, ocisave, startCli, summaryOf } from './support/cli.js';
import { startFaultProxy, type FaultProxy, type FaultRule } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures, type FixtureSet } from './fixtures/index.js';
import { hexOf } from '../src/cache/cache.js';

const MiB = 1024 * 1024;
let source: RunningRegistry;
let proxy: FaultProxy;
let fx: FixtureSet;
let work: string;
let baseline: Map<string, string>;
let refs: string[];
let bigLayer: string;
let bigSize: number;
let runs = 0;

/** Every file under `dir` → sha256 of its content (link files and blob data alike). */
async function treeDigest(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(await readFile(p)).digest('hex'));
    }
  };
  await walk(dir);
  return out;
}

/** Save every fixture through the proxy into a fresh bundle and cache. */
async function saveThroughProxy(extra: string[] = []) {
  const n = ++runs;
  const out = join(work, `bundle-${n}`);
  const cache = join(work, `cache-${n}`);
  const r = await ocisave(['save', ...refs, '-o', out, '--cache', cache, '--platform', 'all', '--json', ...extra]);
  return { r, out, cache };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-faults-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 48 * MiB });
  proxy = await startFaultProxy(source.url);
  refs = fx.references.map((r) => r.replace(fx.registry, proxy.host));
  const big = fx.refs[fx.references.find((r) => r.includes('big/blob'))!]!;
  bigLayer = big.layers![0]!;
  bigSize = fx.blobs[bigLayer]!.size;
  const { r, out } = await saveThroughProxy();
  expect(r.code, r.stderr).toBe(0);
  baseline = await treeDigest(out);
});

afterAll(async () => {
  await proxy?.stop();
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

const blobPath = /\/blobs\/sha256:/;
const faults: [string, FaultRule[]][] = [
  ['connections dropped mid-blob', [{ method: 'GET', path: blobPath, dropAfterBytes: 256 * 1024, count: 4 }]],
  ['a corrupted byte', [{ method: 'GET', path: blobPath, corruptByteAt: 1000, count: 2 }]],
  ['429 with Retry-After', [{ path: /\/(blobs|manifests)\//, status: 429, retryAfter: 1, count: 4 }]],
  ['500s', [{ path: /\/(blobs|manifests)\//, status: 500, count: 4 }]],
  ['Range ignored after a drop', [
    { method: 'GET', path: blobPath, dropAfterBytes: 2 * MiB, count: 1 },
    { method: 'GET', path: blobPath, ignoreRange: true, count: 6 },
  ]],
];

describe('faults', () => {
  it.each(faults)('survives %s with a byte-identical bundle', async (_name, rules) => {
    proxy.setFaults(rules);
    const { r, out } = await saveThroughProxy(['--segment-size', '0']);
    const fired = proxy.remaining();
    proxy.setFaults([]);
    expect(r.code, r.stderr).toBe(0);
    expect(fired.some((left, i) => left < (rules[i]!.count ?? Infinity)), 'the fault fired').toBe(true);
    expect(await treeDigest(out)).toEqual(baseline);
  });

  it('survives drops in segmented downloads too', async () => {
    proxy.setFaults([{ method: 'GET', path: new RegExp(bigLayer), dropAfterBytes: 3 * MiB, count: 3 }]);
    const { r, out } = await saveThroughProxy(['--segment-size', '8']);
    proxy.setFaults([]);
    expect(r.code, r.stderr).toBe(0);
    expect(await treeDigest(out)).toEqual(baseline);
  });

  it('never caches a blob that stays corrupt, and says which', async () => {
    proxy.setFaults([{ method: 'GET', path: new RegExp(bigLayer), corruptByteAt: 12345 }]);
    const { r, out, cache } = await saveThroughProxy(['--segment-size', '0']);
    proxy.setFaults([]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(bigLayer);
    expect(r.stderr).toContain('does not match its digest');
    expect(existsSync(join(cache, 'blobs', 'sha256', hexOf(bigLayer)))).toBe(false);
    expect(existsSync(out)).toBe(false);
  });

  it('resumes a SIGKILLed save with a Range request for only the remainder', async () => {
    const cache = join(work, 'cache-kill');
    const big = fx.references.find((r) => r.includes('big/blob'))!.replace(fx.registry, proxy.host);
    // Slow the big blob so the kill lands mid-transfer.
    proxy.setFaults([{ method: 'GET', path: new RegExp(bigLayer), bandwidthBytesPerSec: 12 * MiB }]);
    proxy.resetStats();
    const child = startCli(['save', big, '-o', join(work, 'killed'), '--cache', cache, '--json', '--segment-size', '0']);
    let doneAtKill = 0;
    const killed = new Promise<void>((resolve) => {
      let buf = '';
      child.stderr!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const e = line.startsWith('{') ? JSON.parse(line) : undefined;
          if (e?.type === 'progress' && e.done >= bigSize * 0.4 && !doneAtKill) {
            doneAtKill = e.done;
            child.kill('SIGKILL');
            resolve();
          }
        }
      });
    });
    const first = await Promise.race([collect(child), killed.then(() => collect(child))]);
    expect(first.signal).toBe('SIGKILL');
    const firstBytes = proxy.stats().byPath[`/v2/big/blob/blobs/${bigLayer}`]!.bytes;
    expect(firstBytes).toBeLessThan(bigSize);

    proxy.setFaults([]);
    proxy.resetStats();
    const second = await ocisave(['save', big, '-o', join(work, 'resumed'), '--cache', cache, '--json', '--segment-size', '0']);
    expect(second.code, second.stderr).toBe(0);
    const stats = proxy.stats();
    const path = `/v2/big/blob/blobs/${bigLayer}`;
    const range = stats.ranges.find((x) => x.path === path)?.range;
    const from = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1]);
    // It continued from a checkpoint of the first run: checkpoints come every 2 MiB, behind at
    // most one 1 MiB write buffer, and the newest record may not have committed before the kill.
    expect(from).toBeGreaterThan(0);
    expect(from).toBeGreaterThanOrEqual(doneAtKill - 5 * MiB);
    expect(stats.byPath[path]!.bytes).toBe(bigSize - from);
    expect(summaryOf(second).resumedBytes).toBe(from);
    expect(createHash('sha256').update(await readFile(join(cache, 'blobs', 'sha256', hexOf(bigLayer)))).digest('hex')).toBe(hexOf(bigLayer));
    expect((await stat(join(cache, 'blobs', 'sha256', hexOf(bigLayer)))).size).toBe(bigSize);
  });
});

describe('interrupts', () => {
  it('stops cleanly on Ctrl-C (SIGINT) with exit 130, writes nothing, and the rerun resumes', async () => {
    const cache = join(work, 'cache-int');
    const big = fx.references.find((r) => r.includes('big/blob'))!.replace(fx.registry, proxy.host);
    proxy.setFaults([{ method: 'GET', path: new RegExp(bigLayer), bandwidthBytesPerSec: 12 * MiB }]);
    const out = join(work, 'interrupted');
    const child = startCli(['save', big, '-o', out, '--cache', cache, '--json', '--segment-size', '0']);
    let sent = false;
    // Interrupt once bytes of the big blob itself have arrived: the small config, fetched on the
    // main thread, can make the first non-zero progress before the big blob's worker has started,
    // and then there is nothing to checkpoint.
    child.stderr!.on('data', (d: Buffer) => {
      const done = [...d.toString().matchAll(/"type":"progress","done":(\d+),"total":(\d+)/g)].some((m) => Number(m[1]) > Number(m[2]) - bigSize);
      if (!sent && done) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const first = await collect(child);
    proxy.setFaults([]);
    expect(first.code).toBe(130);
    expect(first.stderr).toContain('run the same command again to resume');
    expect(existsSync(out)).toBe(false);

    const second = await ocisave(['save', big, '-o', out, '--cache', cache, '--json', '--segment-size', '0']);
    expect(second.code, second.stderr).toBe(0);
    expect(summaryOf(second).resumedBytes).toBeGreaterThan(0);
  });
});

describe('redirects', () => {
  it('follows a 307 to another host without sending it the Authorization header', async () => {
    const user = { username: 'ci', password: 's3cret-pass' };
    const authed = await startRegistry({ htpasswd: user });
    const authedProxy = await startFaultProxy(authed.url);
    try {
      const afx = await seedStandardFixtures({ url: authed.url, ...user }, { skipBig: true });
      const config = join(work, 'docker-config');
      await rm(config, { recursive: true, force: true });
      await (await import('node:fs/promises')).mkdir(config, { recursive: true });
      const auth = Buffer.from(`${user.username}:${user.password}`).toString('base64');
      await writeFile(join(config, 'config.json'), JSON.stringify({ auths: { [authedProxy.host]: { auth } } }));
      authedProxy.setFaults([{ method: 'GET', path: blobPath, redirectTo: 'secondary' }]);
      const ref = afx.references[0]!.replace(afx.registry, authedProxy.host);
      const r = await ocisave(['save', ref, '-o', join(work, 'redirected'), '--cache', join(work, 'cache-redirect'), '--platform', 'all'], {
        env: { DOCKER_CONFIG: config },
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toContain(user.password);
      const stats = authedProxy.stats();
      expect(stats.authorization[authedProxy.host]!.with).toBeGreaterThan(0);
      expect(stats.authorization[authedProxy.secondaryHost]!.without).toBeGreaterThan(0);
      expect(stats.authorization[authedProxy.secondaryHost]!.with).toBe(0);
    } finally {
      await authedProxy.stop();
      await authed.stop();
    }
  });
});
