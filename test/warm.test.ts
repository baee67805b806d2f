// Issue 17, warm saves: a tag the cache knows is asked with a conditional GET (If-None-Match: the
// digest the cache holds), answered 304 over kept-alive connections, and its manifests come from the
// cache by digest (re-hashed); a moved tag costs one GET answered 200; a registry that ignores
// If-None-Match still works; Docker Hub tags keep HEAD (its rate limit counts GETs); an existing
// registry layout keeps the files that are already right; --offline saves from the cache alone.
import { lstatSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { save as saveLibrary } from '../src/engine/pipeline.js';
import { ocisave, summaryOf } from './support/cli.js';
import { descriptorOf, manifestBytes, MT, startHostileRegistry } from './support/hostile-registry.js';
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

/** Manifest and blob requests the proxy saw since its last reset. */
function requests() {
  return proxy.stats().requests.map((r) => ({ ...r, kind: r.path.includes('/manifests/') ? 'manifest' : r.path.includes('/blobs/') ? 'blob' : 'other' }));
}

/** What the proxy saw of each manifest request: method, path, status, If-None-Match, body bytes. */
const manifestRequests = () =>
  requests()
    .filter((r) => r.kind === 'manifest')
    .map((r) => ({ method: r.method, path: r.path, status: r.status, ifNoneMatch: r.ifNoneMatch, bodyBytes: r.bodyBytes }));

async function save(refs: string[], out: string, cache: string, flags: string[] = []) {
  const r = await ocisave(['save', ...refs, '-o', out, '--cache', cache, '--platform', 'all', '--json', ...flags]);
  expect(r.code, r.stderr).toBe(0);
  return summaryOf(r);
}

/** A save through the library with the proxy standing in for Docker Hub's API host (docker.io references). */
const saveViaHub = (refs: string[], out: string, cacheDir: string) => saveLibrary(refs, { format: 'registry', platforms: 'all', dockerHubApi: proxy.host, out, cacheDir });

/**
 * -j 1 gives the save's registry client 1 + 4 connections per host (pipeline.ts: jobs + 4), and
 * --plain-http skips the HTTPS probe, so no more than 5 connections reach the proxy.
 */
const FEW_CONNECTIONS = ['-j', '1', '--plain-http'];
const MAX_CONNECTIONS = 5;

describe('warm saves', () => {
  it('ask each known tag with a conditional GET answered 304, over far fewer connections than tags', async () => {
    const v10 = fx.refs[refOf('app/web:1.0')]!;
    const tags = Array.from({ length: 20 }, (_, i) => `cond-${i}`);
    for (const t of tags) await tag('app/web', t, v10.digest);
    const refs = tags.map((t) => viaProxy(`${fx.registry}/app/web:${t}`));
    const cache = join(work, 'cache-cond');
    proxy.resetStats();
    await save(refs, join(work, 'cond-cold'), cache, FEW_CONNECTIONS);
    // Tags the cache does not know are asked without If-None-Match: no 304 can stand for them.
    const cold = manifestRequests().filter((r) => r.path.includes('/manifests/cond-'));
    expect(cold).toHaveLength(20);
    for (const r of cold) expect(r).toMatchObject({ method: 'GET', status: 200, ifNoneMatch: undefined });

    proxy.resetStats();
    const out = join(work, 'cond-warm');
    const warm = await save(refs, out, cache, FEW_CONNECTIONS);
    expect(warm.images).toBe(20);
    expect(warm.downloaded.blobs).toBe(0);
    // One GET per tag, each carrying the cached digest, each answered 304 with no body; nothing else.
    expect(manifestRequests().sort((a, b) => a.path.localeCompare(b.path))).toEqual(
      tags.map((t) => ({ method: 'GET', path: `/v2/app/web/manifests/${t}`, status: 304, ifNoneMatch: `"${v10.digest}"`, bodyBytes: 0 })).sort((a, b) => a.path.localeCompare(b.path)),
    );
    expect(requests().filter((r) => r.kind === 'blob')).toEqual([]);
    // HEAD closed the connection after every answer (one per tag); a 304 keeps it.
    expect(proxy.stats().connections).toBeGreaterThan(0);
    expect(proxy.stats().connections).toBeLessThanOrEqual(MAX_CONNECTIONS);
    expect(await currentLink(out, 'app/web', 'cond-7')).toBe(v10.digest);
  });

  it('see a moved tag with one GET answered 200, and take the unmoved ones from the cache', async () => {
    const v10 = fx.refs[refOf('app/web:1.0')]!;
    const v11 = fx.refs[refOf('app/web:1.1')]!;
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    await tag('app/web', 'warm', v10.digest);
    const refs = [viaProxy(`${fx.registry}/app/web:warm`), viaProxy(alpine.ref)];
    const cache = join(work, 'cache-moved');
    await save(refs, join(work, 'cold'), cache);

    await tag('app/web', 'warm', v11.digest);
    proxy.resetStats();
    const movedOut = join(work, 'moved');
    await save(refs, movedOut, cache);
    expect(await currentLink(movedOut, 'app/web', 'warm')).toBe(v11.digest);
    const byPath = (path: string) => manifestRequests().filter((r) => r.path === path);
    const moved = byPath('/v2/app/web/manifests/warm');
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatchObject({ method: 'GET', status: 200, ifNoneMatch: `"${v10.digest}"` });
    expect(moved[0]!.bodyBytes).toBeGreaterThan(0);
    expect(byPath(`/v2/${alpine.repository}/manifests/${alpine.tag}`)).toEqual([{ method: 'GET', path: `/v2/${alpine.repository}/manifests/${alpine.tag}`, status: 304, ifNoneMatch: `"${alpine.digest}"`, bodyBytes: 0 }]);
  });

  it('still save correctly from a registry that ignores If-None-Match (200 with the manifest)', async () => {
    const web = fx.refs[refOf('app/web:1.0')]!;
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    const refs = [viaProxy(web.ref), viaProxy(alpine.ref)];
    const cache = join(work, 'cache-ignored');
    await save(refs, join(work, 'ignored-cold'), cache);
    try {
      proxy.setFaults([{ method: 'GET', path: '/manifests/', ignoreIfNoneMatch: true }]);
      proxy.resetStats();
      const out = join(work, 'ignored-warm');
      const s = await save(refs, out, cache);
      expect(s.images).toBe(2);
      expect(s.downloaded.blobs).toBe(0);
      const tagPaths = [`/v2/${web.repository}/manifests/${web.tag}`, `/v2/${alpine.repository}/manifests/${alpine.tag}`];
      const asked = manifestRequests().filter((r) => tagPaths.includes(r.path));
      expect(asked).toHaveLength(2);
      for (const r of asked) expect(r).toMatchObject({ method: 'GET', status: 200 });
      expect(await currentLink(out, web.repository, web.tag)).toBe(web.digest);
      expect(await currentLink(out, alpine.repository, alpine.tag)).toBe(alpine.digest);
    } finally {
      proxy.setFaults([]);
    }
  });

  it('refuse a 304 to a GET that asked nothing conditionally', async () => {
    const web = fx.refs[refOf('app/web:1.0')]!;
    try {
      proxy.setFaults([{ method: 'GET', path: '/manifests/', status: 304 }]);
      proxy.resetStats();
      const r = await ocisave(['save', viaProxy(web.ref), '-o', join(work, 'hostile-304'), '--cache', join(work, 'cache-hostile-304')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`app/web:${web.tag}: registry answered HTTP 304`);
      expect(manifestRequests()).toEqual([{ method: 'GET', path: `/v2/app/web/manifests/${web.tag}`, status: 304, ifNoneMatch: undefined, bodyBytes: 0 }]);
    } finally {
      proxy.setFaults([]);
    }
  });

  it('refuse a 304 whose Docker-Content-Digest names another digest than the one sent', async () => {
    // No real registry contradicts itself on purpose: a server of our own does.
    const liar = await startHostileRegistry();
    try {
      const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
      const layer = Buffer.from('one layer of the registry that will lie');
      liar.blob('cond/liar', config);
      liar.blob('cond/liar', layer);
      const digest = liar.manifest('cond/liar', manifestBytes(descriptorOf(config, MT.config), [descriptorOf(layer, MT.layer)]), MT.manifest, 'v1');
      const ref = `${liar.host}/cond/liar:v1`;
      const cache = join(work, 'cache-liar');
      await save([ref], join(work, 'liar-cold'), cache);
      const other = `sha256:${'0'.repeat(64)}`;
      liar.route('GET', '/v2/cond/liar/manifests/v1', (_req, res) => res.writeHead(304, { 'docker-content-digest': other }).end());
      const r = await ocisave(['save', ref, '-o', join(work, 'liar-warm'), '--cache', cache]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`cond/liar:v1: the registry answered 304 Not Modified to If-None-Match ${digest} with Docker-Content-Digest ${other}`);
    } finally {
      await liar.stop();
    }
  });

  it('ask Docker Hub tags with HEAD, not GET (its pull rate limit counts GETs)', async () => {
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    const refs = [`docker.io/${alpine.repository}:${alpine.tag}`];
    const cache = join(work, 'cache-hub');
    await saveViaHub(refs, join(work, 'hub-cold'), cache);
    proxy.resetStats();
    const out = join(work, 'hub-warm');
    const s = await saveViaHub(refs, out, cache);
    expect(s.images).toBe(1);
    expect(s.downloaded.blobs).toBe(0);
    expect(manifestRequests()).toEqual([{ method: 'HEAD', path: `/v2/${alpine.repository}/manifests/${alpine.tag}`, status: 200, ifNoneMatch: undefined, bodyBytes: 0 }]);
    expect(await currentLink(out, alpine.repository, alpine.tag)).toBe(alpine.digest);
  });

  it('on Docker Hub, fall back to GET when HEAD gives no digest (no header, or 405)', async () => {
    const alpine = fx.refs[refOf('library/alpine:3.19')]!;
    const web = fx.refs[refOf('app/web:1.0')]!;
    const refs = [`docker.io/${alpine.repository}:${alpine.tag}`, `docker.io/${web.repository}:${web.tag}`];
    const cache = join(work, 'cache-head');
    await saveViaHub(refs, join(work, 'head-cold'), cache);
    try {
      for (const status of [200, 405]) {
        // The proxy answers HEAD itself: that status, no Docker-Content-Digest.
        proxy.setFaults([{ method: 'HEAD', path: '/manifests/', status }]);
        proxy.resetStats();
        const out = join(work, `head-${status}`);
        const s = await saveViaHub(refs, out, cache);
        expect(s.images).toBe(2);
        expect(s.downloaded.blobs).toBe(0);
        const manifestGets = manifestRequests().filter((r) => r.method === 'GET');
        expect(manifestGets.map((r) => r.path).sort(), String(status)).toEqual([`/v2/${alpine.repository}/manifests/${alpine.tag}`, `/v2/${web.repository}/manifests/${web.tag}`].sort());
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
    // The cache no longer holds bytes for the tag's digest: an unconditional GET, which a 304 cannot answer.
    expect(manifestRequests().filter((r) => r.path === `/v2/${alpine.repository}/manifests/${alpine.tag}`)).toEqual([
      { method: 'GET', path: `/v2/${alpine.repository}/manifests/${alpine.tag}`, status: 200, ifNoneMatch: undefined, bodyBytes: expect.any(Number) },
    ]);
    const saved = await readFile(join(out, 'docker/registry/v2/blobs/sha256', alpine.digest.slice(7, 9), alpine.digest.slice(7), 'data'));
    expect(sha256(saved)).toBe(alpine.digest);
  });

  it('save --offline with the registry gone: every reference from the cache, the same bundle, and a reference never resolved named as missing', async () => {
    // A proxy of its own, stopped after the online save: its port then refuses every connection.
    const gone = await startFaultProxy(source.url);
    const refs = ['app/web:1.0', 'app/web:1.1'].map((t) => refOf(t).replace(fx.registry, gone.host));
    const cache = join(work, 'cache-offline');
    const online = join(work, 'online');
    expect((await save(refs, online, cache, ['--plain-http'])).downloaded.blobs).toBeGreaterThan(0);
    await gone.stop();

    const offline = join(work, 'offline');
    const s = await save(refs, offline, cache, ['--offline']);
    expect(s.downloaded).toEqual({ blobs: 0, bytes: 0 });
    for (const t of ['1.0', '1.1']) {
      expect(await currentLink(offline, 'app/web', t)).toBe(fx.refs[refOf(`app/web:${t}`)]!.digest);
      expect(await currentLink(offline, 'app/web', t)).toBe(await currentLink(online, 'app/web', t));
    }
    const verified = summaryOf(await ocisave(['verify', offline, '--json']));
    expect(verified.ok).toBe(true);
    expect(verified.tags).toBe(2);

    const unknown = `${gone.host}/app/web:never-resolved`;
    const r = await ocisave(['save', unknown, '-o', join(work, 'offline-missing'), '--cache', cache, '--offline']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`${unknown}: not in the cache (--offline)`);
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
