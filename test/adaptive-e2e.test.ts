// Adaptive connections end to end: a real docker-registry behind the fault proxy answers a storm of
// 503 and 429 to the first blob requests; the save lowers its connections to that host (the JSON
// progress says so), still completes, and every saved blob matches its digest.
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLayer, pushImage, seededBytes, type BuiltLayer } from './fixtures/index.js';
import { ocisave } from './support/cli.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

const LAYERS = 24;
let source: RunningRegistry;
let proxy: FaultProxy;
let work: string;
let layers: BuiltLayer[];
let ref: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-adaptive-'));
  source = await startRegistry();
  // Incompressible layers of ~512 KiB: above the 64 KiB inline size, so each goes through the pool.
  layers = [];
  for (let i = 0; i < LAYERS; i++) layers.push(await buildLayer([{ type: 'file', path: `l${i}.bin`, content: seededBytes(`adaptive-${i}`, 512 * 1024) }]));
  await pushImage(source.url, 'storm/app', '1.0', { format: 'oci', layers });
  proxy = await startFaultProxy(source.url);
  ref = `${proxy.host}/storm/app:1.0`;
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Every blob file of a registry layout → whether its content hashes to its name. */
async function layoutBlobs(root: string): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  const base = join(root, 'docker/registry/v2/blobs/sha256');
  for (const prefix of await readdir(base)) {
    for (const hex of await readdir(join(base, prefix))) {
      const data = await readFile(join(base, prefix, hex, 'data'));
      out.set(`sha256:${hex}`, createHash('sha256').update(data).digest('hex') === hex);
    }
  }
  return out;
}

describe('adaptive connections', () => {
  it('a 503/429 storm lowers the connections to the host, and the save completes with verified content', async () => {
    const half = LAYERS / 2;
    // One refusal per layer (a rule each, count 1): half 503, half 429. However the retries fall,
    // no blob meets more than one, so none runs out of retries.
    proxy.setFaults([
      ...layers.map((l, i) => (i < half ? { method: 'GET', path: `/blobs/${l.digest}`, status: 503, count: 1 } : { method: 'GET', path: `/blobs/${l.digest}`, status: 429, retryAfter: 0, count: 1 })),
      // Each body takes a while (1.5 MB/s per connection), so the save outlives the controller's 500 ms period.
      { method: 'GET', path: '/blobs/', bandwidthBytesPerSec: 1_500_000 },
    ]);
    proxy.resetStats();
    const out = join(work, 'out');
    const r = await ocisave(['save', ref, '-o', out, '--format', 'registry', '--cache', join(work, 'cache'), '--json'], { timeoutMs: 240_000 });
    expect(r.code, r.stderr).toBe(0);

    // The storm happened: every injected answer was sent.
    expect(proxy.remaining().slice(0, LAYERS)).toEqual(Array(LAYERS).fill(0));
    const statuses = proxy.stats().requests.map((q) => q.status);
    expect(statuses.filter((s) => s === 503)).toHaveLength(half);
    expect(statuses.filter((s) => s === 429)).toHaveLength(half);

    // The controller saw it: the host's connections went below the 8 it starts with.
    const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; host?: string; limit?: number; reason?: string });
    const changes = events.filter((e) => e.type === 'connections');
    const throttled = changes.filter((e) => e.reason === 'throttled');
    expect(throttled.length, JSON.stringify(changes)).toBeGreaterThan(0);
    expect(throttled.every((e) => e.host === proxy.host)).toBe(true);
    expect(Math.min(...throttled.map((e) => e.limit!))).toBeLessThanOrEqual(4);

    // Every layer is in the output, and every blob there matches its digest.
    const blobs = await layoutBlobs(out);
    for (const l of layers) expect(blobs.get(l.digest), l.digest).toBe(true);
    expect([...blobs.values()].every(Boolean)).toBe(true);
  }, 300_000);
});
