// Issue 7 end to end, the air-gap round trip against real registries and real skopeo:
// save → push to a second docker-registry → pull back; serve a bundle with `ocisave serve` and
// skopeo copy from it; verify catches damage; a delta bundle holds only what its base lacks.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ocisave, startServe, summaryOf, type ServedBundle } from './support/cli.js';
import { skopeoCopy, skopeoInspectRaw, skopeoListTags } from './support/exec.js';
import { startRegistry, startTokenServer, type RunningRegistry, type TokenServer } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import { parseTarget } from '../src/push/target.js';
import { parseRange } from '../src/serve/server.js';
import type { FixtureSet } from './fixtures/model.js';

// Real registries and child processes: generous limits, whichever vitest config runs this file.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const sha = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const BIG = 6 << 20;

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
let cache: string;
let bundle: string;
const stops: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-roundtrip-'));
  cache = join(work, 'cache');
  bundle = join(work, 'bundle');
  source = await startRegistry();
  stops.push(() => source.stop());
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: BIG });
  const r = await ocisave(['save', ...fx.references, '-o', bundle, '--cache', cache, '--platform', 'all', '-q']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await Promise.allSettled(stops.map((s) => s()));
  await rm(work, { recursive: true, force: true });
});

async function registry(opts: Parameters<typeof startRegistry>[0] = {}): Promise<RunningRegistry> {
  const r = await startRegistry(opts);
  stops.push(() => r.stop());
  return r;
}

/** Same repository and tag on another host (and under a prefix). */
const on = (host: string, ref: string, prefix = '') => ref.replace(`${fx.registry}/`, `${host}/${prefix ? `${prefix}/` : ''}`);

/** Every fixture reference resolves on `host` to the source's digests, index children included. */
async function expectSameDigests(host: string, refs: readonly string[], prefix = '', creds?: string): Promise<void> {
  for (const ref of refs) {
    const want = fx.refs[ref]!;
    expect(sha(await skopeoInspectRaw(on(host, ref, prefix), { creds })), ref).toBe(want.digest);
    for (const child of want.children) {
      const repo = prefix ? `${prefix}/${want.repository}` : want.repository;
      expect(sha(await skopeoInspectRaw(`${host}/${repo}@${child.digest}`, { creds })), `${ref} ${child.platform}`).toBe(child.digest);
    }
  }
}

/**
 * The digests an OCI layout lists in index.json, by reference. The OCI writer converts docker-typed
 * manifests to OCI ones (as skopeo does), so those differ from the source's; OCI ones do not.
 */
async function ociRoots(dir: string): Promise<Map<string, string>> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  return new Map(index.manifests.map((m) => [m.annotations!['org.opencontainers.image.ref.name']!, m.digest]));
}

/** Blob digests whose bytes a registry layout holds. */
async function layoutBlobs(dir: string): Promise<Set<string>> {
  const root = join(dir, 'docker/registry/v2/blobs/sha256');
  const out = new Set<string>();
  for (const p of await readdir(root).catch(() => [])) for (const hex of await readdir(join(root, p))) out.add(`sha256:${hex}`);
  return out;
}

/** `ocisave serve` on a free port; resolves once it prints where it listens. */
async function serve(path: string): Promise<ServedBundle> {
  const served = await startServe(path);
  stops.push(served.stop);
  return served;
}

describe('ocisave push', () => {
  it('loads a registry layout into another registry with chunked uploads and mounts; pulls back with the same digests', async () => {
    const target = await registry();
    const r = await ocisave(['push', bundle, '--to', target.host, '--chunk-size', '1MiB', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = summaryOf(r);
    expect(s.failures).toEqual([]);
    expect(s.tags).toHaveLength(fx.references.length);
    expect(s.manifests.pushed).toBe(Object.keys(fx.manifests).length);
    // Every unique blob is uploaded once; a repository that shares it gets a mount instead.
    expect(s.blobs.uploaded).toBe(Object.keys(fx.blobs).length);
    expect(s.blobs.uploadedBytes).toBe(fx.totalBlobBytes);
    expect(s.blobs.mounted).toBeGreaterThan(0);

    await expectSameDigests(target.host, fx.references);
    // skopeo checks every blob's digest while copying; the big one went up in 1 MiB PATCHes.
    for (const ref of [fx.references.find((x) => x.includes('/app/web:1.0'))!, fx.references.find((x) => x.includes('/big/blob:'))!]) {
      await skopeoCopy(`docker://${on(target.host, ref)}`, `oci:${join(work, 'pulled')}:${fx.refs[ref]!.tag}`, ['--all']);
    }

    // Again: everything is there, nothing moves.
    const again = summaryOf(await ocisave(['push', bundle, '--to', target.host, '--json']));
    expect(again.blobs.uploaded).toBe(0);
    expect(again.blobs.mounted).toBe(0);
    expect(again.manifests.pushed).toBe(0);
    expect(again.failures).toEqual([]);
  });

  it('pushes under a prefix, and reads OCI layouts and docker archives', async () => {
    const target = await registry();
    const r1 = await ocisave(['push', bundle, '--to', `${target.host}/mirror/site`, '--repository', 'app/web', '-q']);
    expect(r1.code, r1.stderr).toBe(0);
    const webRefs = fx.references.filter((x) => fx.refs[x]!.repository === 'app/web');
    await expectSameDigests(target.host, webRefs, 'mirror/site');

    // OCI layout (names are full references in index.json).
    const some = fx.references.filter((x) => /\/(library\/alpine:3\.19|nested\/deep\/repo\/tool:v2|charts\/webapp:)/.test(x));
    const oci = join(work, 'oci');
    expect((await ocisave(['save', ...some, '-o', oci, '--format', 'oci', '--cache', cache, '-q'])).code).toBe(0);
    const r2 = await ocisave(['push', oci, '--to', `${target.host}/oci`, '--json']);
    expect(r2.code, r2.stderr).toBe(0);
    const roots = await ociRoots(oci);
    expect(roots.size).toBe(some.length);
    for (const ref of some) expect(sha(await skopeoInspectRaw(on(target.host, ref, 'oci'))), ref).toBe(roots.get(ref));
    await expectSameDigests(target.host, some.filter((x) => fx.refs[x]!.mediaType.includes('oci')), 'oci');

    // docker archive, one platform: a single-manifest image keeps its digest; a multi-arch tag names
    // the saved platform's manifest, since the registry refuses an index missing its other platforms.
    const tool = fx.references.find((x) => x.includes('/nested/deep/repo/tool:'))!;
    const web = fx.references.find((x) => x.includes('/app/web:1.1'))!;
    const tar = join(work, 'images.tar');
    expect((await ocisave(['save', tool, web, '-o', tar, '--format', 'docker', '--platform', 'linux/amd64', '--cache', cache, '-q'])).code).toBe(0);
    const r3 = await ocisave(['push', tar, '--to', `${target.host}/docker`, '--json']);
    expect(r3.code, r3.stderr).toBe(0);
    const s3 = summaryOf(r3);
    await expectSameDigests(target.host, [tool], 'docker');
    const amd64 = fx.refs[web]!.children.find((c) => c.platform === 'linux/amd64')!;
    expect(s3.retagged).toEqual([{ reference: on(target.host, web, 'docker'), index: fx.refs[web]!.digest, manifest: amd64.digest }]);
    expect(sha(await skopeoInspectRaw(on(target.host, web, 'docker')))).toBe(amd64.digest);
  });

  it('reads a docker archive without manifests (skopeo docker-archive:): config digest kept, layers as archived', async () => {
    const wh = fx.refs[fx.references.find((x) => x.includes('/test/whiteouts:'))!]!;
    const tar = join(work, 'legacy.tar');
    await skopeoCopy(`docker://${wh.ref}`, `docker-archive:${tar}:test/whiteouts:latest`);
    const v = await ocisave(['verify', tar, '--json']);
    expect(v.code, v.stdout).toBe(0);
    expect(JSON.parse(v.stdout).blobs.checked).toBe(wh.layers!.length); // each layer against its diff_id
    const target = await registry();
    const r = await ocisave(['push', tar, '--to', `${target.host}/legacy`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const manifest = JSON.parse(await skopeoInspectRaw(`${target.host}/legacy/test/whiteouts:latest`)) as { config: { digest: string }; layers: unknown[] };
    expect(manifest.config.digest).toBe(wh.config);
    expect(manifest.layers).toHaveLength(wh.layers!.length);
    await skopeoCopy(`docker://${target.host}/legacy/test/whiteouts:latest`, `oci:${join(work, 'legacy-pulled')}:x`);
  });

  it('survives a connection cut mid-PATCH and a 503 (fault-injecting proxy in front of the real registry)', async () => {
    const target = await registry();
    const upstream = new URL(target.url);
    let patches = 0;
    let failedOnce = false;
    const cuts: string[] = [];
    // Forwards everything (Host included, so the registry's Locations point back here), except:
    // the third PATCH is cut off after a few bytes, and the first manifest PUT answers 503.
    const proxy = http.createServer((req, res) => {
      if (req.method === 'PATCH' && ++patches === 3) {
        cuts.push(req.url!);
        req.once('data', () => req.socket.destroy());
        return;
      }
      if (req.method === 'PUT' && req.url!.includes('/manifests/') && !failedOnce) {
        failedOnce = true;
        req.resume();
        res.writeHead(503, { 'retry-after': '0' }).end();
        return;
      }
      const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode!, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    proxy.listen(0, '127.0.0.1');
    await new Promise((r) => proxy.once('listening', r));
    stops.push(async () => {
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    });
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const r = await ocisave(['push', bundle, '--to', host, '--repository', 'big/blob', '--chunk-size', '1MiB', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(cuts).toHaveLength(1);
    expect(failedOnce).toBe(true);
    const bigRef = fx.references.find((x) => x.includes('/big/blob:'))!;
    await expectSameDigests(target.host, [bigRef]);
    await skopeoCopy(`docker://${on(target.host, bigRef)}`, `oci:${join(work, 'after-faults')}:x`);
  });

  it('parses --to and Range the way registries and clients write them', () => {
    expect(parseTarget('127.0.0.1:5000')).toEqual({ registry: '127.0.0.1:5000', prefix: '', plainHttp: false });
    expect(parseTarget('http://reg.local:5000/mirror/site/')).toEqual({ registry: 'reg.local:5000', prefix: 'mirror/site', plainHttp: true });
    expect(parseTarget('index.docker.io/acme')).toEqual({ registry: 'docker.io', prefix: 'acme', plainHttp: false });
    expect(() => parseTarget('reg.local/Bad_Prefix')).toThrow(/prefix/);
    expect(parseRange('bytes=0-99', 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=900-', 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=-10', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRange('bytes=500-5000', 1000)).toEqual({ start: 500, end: 999 });
    expect(parseRange('bytes=1000-', 1000)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,5-6', 1000)).toBeUndefined();
  });

  it('asks the token server for pull,push scopes (and pull on the mount source)', async () => {
    const ts: TokenServer = await startTokenServer({ users: { ci: 's3cret' } });
    stops.push(() => ts.stop());
    const target = await registry({ tokenAuth: ts.tokenAuth });
    const denied = await ocisave(['push', bundle, '--to', target.host, '--repository', 'library/alpine', '-q']);
    expect(denied.code).toBe(1);
    expect(denied.stderr + denied.stdout).toMatch(/authentication|not authorized|rejected|credentials/i);

    const r = await ocisave(['push', bundle, '--to', target.host, '--repository', 'library/alpine', '--repository', 'app/web', '--username', 'ci', '--password-stdin', '--json'], { input: 's3cret\n' });
    expect(r.code, r.stderr).toBe(0);
    const s = summaryOf(r);
    expect(s.failures).toEqual([]);
    expect(s.blobs.mounted).toBeGreaterThan(0);
    const scopes = ts.requests().flatMap((q) => q.scope);
    expect(scopes).toContain('repository:library/alpine:pull,push');
    expect(scopes).toContain('repository:app/web:pull,push');
    expect(scopes.some((x) => x === 'repository:library/alpine:pull' || x === 'repository:app/web:pull')).toBe(true);
    expect(JSON.stringify(ts.requests())).not.toContain('s3cret');
    await expectSameDigests(
      target.host,
      fx.references.filter((x) => ['library/alpine', 'app/web'].includes(fx.refs[x]!.repository)),
      '',
      'ci:s3cret',
    );
  });
});

describe('ocisave serve', () => {
  it('serves a registry layout to skopeo: manifests, blobs with Range, tags, catalog, errors', async () => {
    const srv = await serve(bundle);
    await expectSameDigests(srv.host, fx.references);
    const web = fx.references.find((x) => x.includes('/app/web:1.0'))!;
    await skopeoCopy(`docker://${on(srv.host, web)}`, `oci:${join(work, 'from-serve')}:web`, ['--all']);
    expect((await skopeoListTags(`${srv.host}/app/web`)).sort()).toEqual(
      fx.references.filter((x) => fx.refs[x]!.repository === 'app/web').map((x) => fx.refs[x]!.tag).sort(),
    );

    // Range on the big layer: 206, Content-Range, exactly those bytes.
    const big = fx.refs[fx.references.find((x) => x.includes('/big/blob:'))!]!;
    const layer = big.layers![0]!;
    const hex = layer.slice(7);
    const data = await readFile(join(bundle, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'));
    const part = await request(`${srv.url}/v2/big/blob/blobs/${layer}`, { headers: { range: 'bytes=1000-1999' } });
    expect(part.statusCode).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 1000-1999/${data.length}`);
    expect(Buffer.from(await part.body.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true);
    const tail = await request(`${srv.url}/v2/big/blob/blobs/${layer}`, { headers: { range: `bytes=${data.length - 10}-` } });
    expect(tail.statusCode).toBe(206);
    expect(Buffer.from(await tail.body.arrayBuffer()).equals(data.subarray(data.length - 10))).toBe(true);
    const beyond = await request(`${srv.url}/v2/big/blob/blobs/${layer}`, { headers: { range: `bytes=${data.length}-` } });
    await beyond.body.dump();
    expect(beyond.statusCode).toBe(416);

    const head = await request(`${srv.url}/v2/app/web/manifests/1.0`, { method: 'HEAD' });
    await head.body.dump();
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-type']).toBe(fx.refs[web]!.mediaType);
    expect(head.headers['docker-content-digest']).toBe(fx.refs[web]!.digest);

    const catalog = (await (await request(`${srv.url}/v2/_catalog`)).body.json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual([...new Set(fx.references.map((x) => fx.refs[x]!.repository))].sort());
    const missing = await request(`${srv.url}/v2/app/web/manifests/nope`);
    expect(missing.statusCode).toBe(404);
    expect(((await missing.body.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('MANIFEST_UNKNOWN');
    const unknownBlob = await request(`${srv.url}/v2/app/web/blobs/sha256:${'0'.repeat(64)}`);
    expect(unknownBlob.statusCode).toBe(404);
    expect(((await unknownBlob.body.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('BLOB_UNKNOWN');
    const write = await request(`${srv.url}/v2/app/web/blobs/uploads/`, { method: 'POST' });
    expect(write.statusCode).toBe(405);
    expect(((await write.body.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe('UNSUPPORTED');
  });

  it('serves an OCI layout', async () => {
    const refs = fx.references.filter((x) => /\/(app\/web:1\.0|test\/whiteouts:latest)$/.test(x));
    const oci = join(work, 'oci-serve');
    expect((await ocisave(['save', ...refs, '-o', oci, '--format', 'oci', '--cache', cache, '-q'])).code).toBe(0);
    const srv = await serve(oci);
    const roots = await ociRoots(oci);
    for (const ref of refs) expect(sha(await skopeoInspectRaw(on(srv.host, ref))), ref).toBe(roots.get(ref));
    await expectSameDigests(srv.host, refs.filter((x) => fx.refs[x]!.mediaType.includes('oci')));
    await skopeoCopy(`docker://${on(srv.host, refs[0]!)}`, `oci:${join(work, 'from-serve-oci')}:x`, ['--all']);
  });
});

describe('ocisave verify', () => {
  it('passes a good bundle and catches a corrupted blob and a missing link (exit 1, --json)', async () => {
    const good = await ocisave(['verify', bundle, '--json']);
    expect(good.code, good.stdout).toBe(0);
    const ok = JSON.parse(good.stdout);
    expect(ok.ok).toBe(true);
    expect(ok.problems).toEqual([]);

    // A copy (the bundle's files are hard links into the cache).
    const bad = join(work, 'damaged');
    await cp(bundle, bad, { recursive: true });
    const tool = fx.refs[fx.references.find((x) => x.includes('/nested/deep/repo/tool:'))!]!;
    const layer = tool.layers![tool.layers!.length - 1]!;
    const file = join(bad, 'docker/registry/v2/blobs/sha256', layer.slice(7, 9), layer.slice(7), 'data');
    const bytes = await readFile(file);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(file, bytes);
    const config = tool.config!;
    await rm(join(bad, 'docker/registry/v2/repositories/nested/deep/repo/tool/_layers/sha256', config.slice(7)), { recursive: true });

    const r = await ocisave(['verify', bad, '--json']);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'corrupt-blob', digest: layer }),
        expect.objectContaining({ kind: 'missing-link', digest: config, repository: 'nested/deep/repo/tool' }),
      ]),
    );
    const text = await ocisave(['verify', bad]);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('FAILED');
  });
});

describe('ocisave save --since', () => {
  it('writes only what the base lacks; base + delta pushed gives everything', async () => {
    const baseRefs = fx.references.filter((x) => /\/(library\/alpine:3\.19|app\/web:1\.0)$/.test(x));
    const base = join(work, 'base');
    const delta = join(work, 'delta');
    expect((await ocisave(['save', ...baseRefs, '-o', base, '--cache', cache, '-q'])).code).toBe(0);
    // A fresh cache: what the base holds is not even downloaded.
    const r = await ocisave(['save', ...fx.references, '-o', delta, '--since', base, '--cache', join(work, 'cache-delta'), '--json']);
    expect(r.code, r.stderr).toBe(0);

    const [full, baseBlobs, deltaBlobs] = await Promise.all([layoutBlobs(bundle), layoutBlobs(base), layoutBlobs(delta)]);
    expect(deltaBlobs.size).toBeGreaterThan(0);
    for (const d of deltaBlobs) expect(baseBlobs.has(d), d).toBe(false);
    expect(new Set([...baseBlobs, ...deltaBlobs])).toEqual(full);
    const newBytes = Object.keys(fx.blobs).filter((d) => !baseBlobs.has(d)).reduce((n, d) => n + fx.blobs[d]!.size, 0);
    expect(summaryOf(r).downloaded.bytes).toBe(newBytes);
    // Tags are all there, even those whose content is only in the base.
    for (const ref of fx.references) {
      const { repository, tag } = fx.refs[ref]!;
      expect(existsSync(join(delta, 'docker/registry/v2/repositories', repository, '_manifests/tags', tag, 'current/link')), ref).toBe(true);
    }
    expect((await ocisave(['verify', delta])).code).toBe(1); // incomplete on its own
    expect((await ocisave(['verify', delta, '--since', base])).code).toBe(0);

    // Copied over the base: the full set.
    const merged = join(work, 'merged');
    await cp(base, merged, { recursive: true });
    await cp(delta, merged, { recursive: true, force: true });
    expect((await ocisave(['verify', merged])).code).toBe(0);

    // Pushed after the base: the full set, with the base's blobs never sent twice.
    const target = await registry();
    const rb = summaryOf(await ocisave(['push', base, '--to', target.host, '--json']));
    expect(rb.failures).toEqual([]);
    const rd = await ocisave(['push', delta, '--to', target.host, '--json']);
    expect(rd.code, rd.stderr).toBe(0);
    const sd = summaryOf(rd);
    expect(sd.failures).toEqual([]);
    expect(sd.blobs.uploaded).toBe([...deltaBlobs].filter((d) => fx.blobs[d]).length);
    await expectSameDigests(target.host, fx.references);

    // The delta alone into an empty registry says what is missing.
    const empty = await registry();
    const alone = await ocisave(['push', delta, '--to', empty.host]);
    expect(alone.code).toBe(1);
    expect(alone.stdout + alone.stderr).toMatch(/push its base bundle first/);

    const wrong = await ocisave(['save', baseRefs[0]!, '-o', join(work, 'x.tar'), '--format', 'docker', '--since', base, '--cache', cache]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('--since works with --format registry');
  }, 600_000); // a dozen CLI runs and two registries: 120 s was outrun at a load of ~40 on 2 cores
});
