// Issue 17, warm saves: a tag the cache knows is asked with HEAD and its manifests come from the
// cache by digest (re-hashed); a moved tag is still seen; a HEAD answer without a digest falls back
// to GET; an existing registry layout keeps the files that are already right.
import { lstatSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { pushManifest, seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

// Real registries and child processes on a loaded machine: generous safety nets only.
vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

let source: RunningRegistry;
let proxy: FaultProxy;
let fx: FixtureSet;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-warm-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { skipBig: true });
  proxy = await startFaultProxy(source.url);
});

afterAll(async () => {
  await proxy?.stop();
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

const refOf = (repoTag: string) => fx.references.find((r) => r.endsWith(`/${repoTag}`))!;
const viaProxy = (ref: string) => ref.replace(fx.registry, proxy.host);

/** Point `repo:tag` at the manifest `digest` (pushed earlier) by PUTting its exact bytes. */
async function tag(repo: string, tagName: string, digest: string): Promise<void> {
  const m = fx.manifests[digest]!;
  await pushManifest(source.url, repo, tagName, m.json, m.mediaType);
}

/** The digest a registry layout's tag names. */
const currentLink = (out: string, repo: string, tagName: string) => readFile(join(out, 'docker/registry/v2/repositories', repo, '_manifests/tags', tagName, 'current/link'), 'utf8');

/** Manifest and blob requests the proxy saw since its last reset, as "METHOD kind". */
function requests(): { method: string; kind: 'manifest' | 'blob' | 'other'; path: string }[] {
  return proxy.stats().requests.map((r) => ({ method: r.method, kind: r.path.includes('/manifests/') ? 'manifest' : r.path.includes('/blobs/') ? 'blob' : 'other', path: r.path }));
}

async function save(refs: string[], out: string, cache: string) {
  const r = await ocisave(['save', ...refs, '-o', out, '--cache', cache, '--platform', 'all', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return summaryOf(r);
}

describe('warm saves', () => {
  it('ask each known tag with HEAD, take manifests from the cache, and still see a moved tag', async () => {
    const v10 = fx.refs[refOf('app/web:1.0')]!;
    const v11 = fx.refs[refOf('app/web:1.1')]!;
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    await tag('app/web', 'warm', v10.digest);
    const refs = [viaProxy(`${fx.registry}/app/web:warm`), viaProxy(alpine.ref)];
    const cache = join(work, 'cache-moved');
    await save(refs, join(work, 'cold'), cache);

    proxy.resetStats();
    const warmOut = join(work, 'warm');
    const warm = await save(refs, warmOut, cache);
    expect(warm.downloaded.blobs).toBe(0);
    expect(warm.images).toBe(2);
    // One HEAD per tag; no manifest body, no blob asked for.
    expect(requests().filter((r) => r.kind !== 'other')).toEqual(
      expect.arrayContaining([
        { method: 'HEAD', kind: 'manifest', path: '/v2/app/web/manifests/warm' },
        { method: 'HEAD', kind: 'manifest', path: `/v2/${alpine.repository}/manifests/${alpine.tag}` },
      ]),
    );
    expect(requests().filter((r) => r.kind !== 'other')).toHaveLength(2);
    expect(await currentLink(warmOut, 'app/web', 'warm')).toBe(v10.digest);

    // The tag moves on: HEAD names the new digest, which the cache lacks, so it is fetched.
    await tag('app/web', 'warm', v11.digest);
    proxy.resetStats();
    const movedOut = join(work, 'moved');
    await save(refs, movedOut, cache);
    expect(await currentLink(movedOut, 'app/web', 'warm')).toBe(v11.digest);
    const gets = requests().filter((r) => r.kind === 'manifest' && r.method === 'GET');
    expect(gets.map((r) => r.path)).toContain('/v2/app/web/manifests/warm');
    expect(gets.map((r) => r.path)).not.toContain(`/v2/${alpine.repository}/manifests/${alpine.tag}`);
  });

  it('fall back to GET when HEAD gives no digest (no header, or 405)', async () => {
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    const web = fx.refs[refOf('app/web:1.0')]!;
    const refs = [viaProxy(alpine.ref), viaProxy(web.ref)];
    const cache = join(work, 'cache-head');
    await save(refs, join(work, 'head-cold'), cache);
    try {
      for (const status of [200, 405]) {
        // The proxy answers HEAD itself: that status, no Docker-Content-Digest.
        proxy.setFaults([{ method: 'HEAD', path: '/manifests/', status }]);
        proxy.resetStats();
        const out = join(work, `head-${status}`);
        const s = await save(refs, out, cache);
        expect(s.images).toBe(2);
        expect(s.downloaded.blobs).toBe(0);
        const manifestGets = requests().filter((r) => r.kind === 'manifest' && r.method === 'GET').map((r) => r.path);
        expect(manifestGets.sort(), String(status)).toEqual([`/v2/${alpine.repository}/manifests/${alpine.tag}`, `/v2/${web.repository}/manifests/${web.tag}`].sort());
        expect(await currentLink(out, web.repository, web.tag)).toBe(web.digest);
      }
    } finally {
      proxy.setFaults([]);
    }
  });

  it('refetch a manifest whose bytes in the cache index do not match its digest', async () => {
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    const cache = join(work, 'cache-damaged');
    await save([viaProxy(alpine.ref)], join(work, 'damaged-cold'), cache);
    // Another writer of the index replaced the manifest's bytes.
    const env = open({ path: join(cache, 'index.lmdb'), maxDbs: 8 });
    try {
      await env.openDB({ name: 'manifests' }).put(alpine.digest, { mediaType: alpine.mediaType, bytes: Buffer.from('{"schemaVersion":2,"manifests":[]}') });
    } finally {
      await env.close();
    }
    proxy.resetStats();
    const out = join(work, 'damaged-warm');
    const s = await save([viaProxy(alpine.ref)], out, cache);
    expect(s.images).toBe(1);
    expect(requests().filter((r) => r.kind === 'manifest' && r.method === 'GET').map((r) => r.path)).toContain(`/v2/${alpine.repository}/manifests/${alpine.tag}`);
    const saved = await readFile(join(out, 'docker/registry/v2/blobs/sha256', alpine.digest.slice(7, 9), alpine.digest.slice(7), 'data'));
    expect(sha256(saved)).toBe(alpine.digest);
  });

  it('leave the files of an existing layout that are already right, and move its tag', async () => {
    const v10 = fx.refs[refOf('app/web:1.0')]!;
    const v11 = fx.refs[refOf('app/web:1.1')]!;
    await tag('app/web', 'again', v10.digest);
    const ref = viaProxy(`${fx.registry}/app/web:again`);
    const cache = join(work, 'cache-again');
    const out = join(work, 'again');
    await save([ref], out, cache);
    const current = join(out, 'docker/registry/v2/repositories/app/web/_manifests/tags/again/current/link');
    const root = join(out, 'docker/registry/v2/blobs/sha256', v10.digest.slice(7, 9), v10.digest.slice(7), 'data');
    const before = { current: lstatSync(current), root: lstatSync(root) };

    await save([ref], out, cache);
    // Same inodes, untouched: nothing rewritten.
    expect(lstatSync(current).ino).toBe(before.current.ino);
    expect(lstatSync(current).mtimeMs).toBe(before.current.mtimeMs);
    expect(lstatSync(root).ino).toBe(before.root.ino);

    await tag('app/web', 'again', v11.digest);
    await save([ref], out, cache);
    expect(await currentLink(out, 'app/web', 'again')).toBe(v11.digest);
    // The earlier revision stays (a layout is added to), the tag names the new one.
    expect(lstatSync(root).ino).toBe(before.root.ino);
  });
});
