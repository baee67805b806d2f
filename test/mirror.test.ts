// Issue 5: --registry-mirror. Two real registries: the "origin" stands in for Docker Hub (through
// the library's dockerHubApi option) and holds every fixture; the "mirror" holds some of them, with one blob
// deleted. Counting proxies in front of both show where each manifest and blob came from.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveGraph, save, type SaveOptions } from '../src/engine/pipeline.js';
import { EngineEvents } from '../src/util/events.js';
import { skopeoCopy, skopeoInspectRaw } from './support/exec.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { freePort, layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureRef, FixtureSet } from './fixtures/model.js';

const sha = sha256;

let origin: RunningRegistry;
let mirror: RunningRegistry;
let originProxy: FaultProxy;
let mirrorProxy: FaultProxy;
let fx: FixtureSet;
let work: string;
let deleted: string;
const layouts = layoutServers();

const fix = (repoTag: string): FixtureRef => fx.refs[`${fx.registry}/${repoTag}`]!;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-mirror-'));
  [origin, mirror] = await Promise.all([startRegistry(), startRegistry()]);
  fx = await seedStandardFixtures(origin.url, { skipBig: true });
  // The mirror gets alpine and app/web:1.0, digests preserved, as a pull-through cache would hold them.
  for (const repoTag of ['library/alpine:3.19', 'app/web:1.0']) {
    await skopeoCopy(`${origin.host}/${repoTag}`, `${mirror.host}/${repoTag}`, ['--all', '--preserve-digests']);
  }
  // ... but lacks app/web:1.0's own layer (manifest still there): that blob must come from the origin.
  deleted = fix('app/web:1.0').children[0]!.layers.at(-1)!;
  const del = await request(`${mirror.url}/v2/app/web/blobs/${deleted}`, { method: 'DELETE' });
  await del.body.dump();
  expect(del.statusCode).toBe(202);
  [originProxy, mirrorProxy] = await Promise.all([startFaultProxy(origin.url), startFaultProxy(mirror.url)]);
});

afterAll(async () => {
  await Promise.all([originProxy?.stop(), mirrorProxy?.stop()]);
  await Promise.all([origin?.stop(), mirror?.stop(), layouts.stopAll()]);
  await rm(work, { recursive: true, force: true });
});

const serve = layouts.serve;

/** A save through the library, `hub` standing in for Docker Hub's API host; warnings collected. */
async function saveVia(hub: string, refs: string[], opts: Pick<SaveOptions, 'out' | 'cacheDir' | 'mirrors'>) {
  const warnings: string[] = [];
  const events = new EngineEvents().on((e) => e.type === 'warning' && warnings.push(e.message));
  const summary = await save(refs, { format: 'registry', platforms: 'all', dockerHubApi: hub, events, ...opts });
  return { summary, warnings };
}

/** Successful blob GETs a proxy forwarded, as a set of digests. */
function blobsServed(p: FaultProxy): Set<string> {
  return new Set(
    p
      .stats()
      .requests.filter((q) => q.method === 'GET' && q.status === 200 && q.path.includes('/blobs/'))
      .map((q) => q.path.slice(q.path.lastIndexOf('/') + 1)),
  );
}

const manifestPaths = (p: FaultProxy) => p.stats().requests.filter((q) => q.path.includes('/manifests/')).map((q) => q.path);

describe('--registry-mirror', () => {
  it('takes docker.io manifests and blobs from the mirror, the rest from the origin, with the same digests', async () => {
    originProxy.resetStats();
    mirrorProxy.resetStats();
    const bundle = join(work, 'mirrored');
    const { summary } = await saveVia(originProxy.host, ['alpine:3.19', 'app/web:1.0', 'docker.io/app/web:1.1'], { mirrors: [mirrorProxy.host], out: bundle, cacheDir: join(work, 'c1') });
    expect(summary.images).toBe(3);

    const alpine = fix('library/alpine:3.19');
    const web10 = fix('app/web:1.0');
    const web11 = fix('app/web:1.1');
    // Manifests: alpine and app/web:1.0 entirely from the mirror; app/web:1.1 (not mirrored) from the origin.
    expect(manifestPaths(originProxy).every((p) => p.startsWith('/v2/app/web/manifests/'))).toBe(true);
    expect(manifestPaths(originProxy)).toContain('/v2/app/web/manifests/1.1');
    expect(manifestPaths(originProxy)).not.toContain('/v2/app/web/manifests/1.0');
    // Blobs: the origin served only what the mirror lacks — the deleted layer and 1.1's own blobs.
    const fromMirror = blobsServed(mirrorProxy);
    const fromOrigin = blobsServed(originProxy);
    const only11 = web11.blobs.filter((b) => !web10.blobs.includes(b) && !alpine.blobs.includes(b));
    expect([...fromOrigin].sort()).toEqual([deleted, ...only11].sort());
    expect([...fromMirror].sort()).toEqual([...new Set([...alpine.blobs, ...web10.blobs])].filter((b) => b !== deleted).sort());

    // What was saved is what the origin has, digest for digest.
    const reg = await serve(bundle);
    for (const [name, want] of [['library/alpine:3.19', alpine], ['app/web:1.0', web10], ['app/web:1.1', web11]] as const) {
      expect(sha(await skopeoInspectRaw(`${reg.host}/${name}`)), name).toBe(want.digest);
      await skopeoCopy(`${reg.host}/${name}`, `oci:${join(work, 'pulled')}:${name.replace(/\W/g, '-')}`, ['--all']);
    }
  });

  it('falls back to the origin when the mirror is down, with one warning', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const started = Date.now();
    const { warnings } = await saveVia(originProxy.host, ['alpine:3.19'], { mirrors: [dead], out: join(work, 'dead-mirror'), cacheDir: join(work, 'c2') });
    expect(warnings).toEqual([`registry mirror ${dead} is unreachable; using the next mirror or the registry itself`]);
    // One refused ping, not a retry backoff per manifest.
    expect(Date.now() - started).toBeLessThan(15_000);
    const reg = await serve(join(work, 'dead-mirror'));
    expect(sha(await skopeoInspectRaw(`${reg.host}/library/alpine:3.19`))).toBe(fix('library/alpine:3.19').digest);
  });

  it('needs only the mirror for what it has (origin down), and several mirrors are tried in order', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    mirrorProxy.resetStats();
    const resolved = await resolveGraph(['alpine:3.19'], { platforms: 'all', mirrors: [dead, mirrorProxy.host], dockerHubApi: dead, cacheDir: join(work, 'c3') });
    await resolved.close();
    expect(resolved.graph.images).toHaveLength(1);
    const image = resolved.graph.images[0]!;
    expect({ input: image.input, registry: image.ref.registry, repository: image.ref.repository, digest: image.root.digest }).toEqual({
      input: 'alpine:3.19',
      registry: 'docker.io',
      repository: 'library/alpine',
      digest: fix('library/alpine:3.19').digest,
    });
    expect(manifestPaths(mirrorProxy)).toContain('/v2/library/alpine/manifests/3.19');

    const { summary } = await saveVia(dead, ['alpine:3.19'], { mirrors: [mirrorProxy.host], out: join(work, 'mirror-only'), cacheDir: join(work, 'c3') });
    expect(summary.downloaded.blobs).toBe(fix('library/alpine:3.19').blobs.length);
  });

  it('leaves references to other registries alone', async () => {
    mirrorProxy.resetStats();
    const { summary } = await saveVia(originProxy.host, [`${originProxy.host}/library/alpine:3.19`], { mirrors: [mirrorProxy.host], out: join(work, 'other'), cacheDir: join(work, 'c4') });
    expect(summary.images).toBe(1);
    expect(mirrorProxy.stats().requests).toHaveLength(0);
  });
});
