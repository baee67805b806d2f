// Self-test of the test infrastructure against the real registry: fixtures,
// skopeo/umoci wrappers, auth variants and the fault proxy.
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLayer, pushImage, seedStandardFixtures, WHITEOUTS_TREE, type FixtureSet } from './fixtures/index.js';
import { run, skopeoCopy, skopeoInspect, skopeoInspectRaw, skopeoListTags, umociUnpack } from './support/exec.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { startRegistry, startTokenServer, type RunningRegistry } from './support/registry.js';

const sha = (b: string | Uint8Array) => 'sha256:' + createHash('sha256').update(b).digest('hex');

let reg: RunningRegistry;
let fx: FixtureSet;
let work: string;
const timings: Record<string, number> = {};

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ocisave-support-'));
  let t = Date.now();
  reg = await startRegistry();
  timings.registryStart = Date.now() - t;
  t = Date.now();
  fx = await seedStandardFixtures(reg.url);
  timings.seedStandard = Date.now() - t;
});

afterAll(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
  console.log('support timings (ms):', JSON.stringify(timings));
});

describe('registry + fixtures', () => {
  it('describes what it pushed, and the registry serves exactly those bytes', async () => {
    expect(fx.references.length).toBeGreaterThanOrEqual(10);
    for (const name of ['library/alpine:3.19', 'app/web:1.0', 'app/web:1.1', 'nested/deep/repo/tool:v2', 'test/whiteouts:latest', 'charts/mysql:8.8.19', 'big/blob:latest']) {
      expect(fx.references).toContain(`${reg.host}/${name}`);
    }
    const alpine = fx.refs[`${reg.host}/library/alpine:3.19`]!;
    expect(alpine.children.map((c) => c.platform)).toEqual(['linux/amd64', 'linux/arm64/v8', 'linux/arm/v7']);
    expect(fx.refs[`${reg.host}/library/alpine:latest`]!.digest).toBe(alpine.digest);
    const sig = fx.references.find((r) => fx.refs[r]!.kind === 'signature')!;
    expect(sig).toBe(`${reg.host}/app/web:${fx.refs[`${reg.host}/app/web:1.0`]!.digest.replace(':', '-')}.sig`);

    // Every manifest, fetched with skopeo, hashes to the recorded digest.
    await Promise.all(
      fx.references.map(async (ref) => {
        const raw = await skopeoInspectRaw(ref);
        expect(sha(raw), ref).toBe(fx.refs[ref]!.digest);
        expect(raw).toBe(fx.manifests[fx.refs[ref]!.digest]!.json);
      }),
    );
    const child = alpine.children[1]!;
    expect(sha(await skopeoInspectRaw(`${reg.host}/library/alpine@${child.digest}`))).toBe(child.digest);
    expect(await skopeoListTags(`${reg.host}/app/web`)).toEqual(expect.arrayContaining(['1.0', '1.1']));

    // Layers are shared: alpine's base layer is in app/web and tool too.
    const base = alpine.children[0]!.layers[0]!;
    expect(fx.refs[`${reg.host}/app/web:1.0`]!.blobs).toContain(base);
    expect(fx.refs[`${reg.host}/nested/deep/repo/tool:v2`]!.blobs).toContain(base);
    expect(fx.blobs[base]!.mediaTypes.sort()).toEqual(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.oci.image.layer.v1.tar+gzip']);
    expect(fx.refs[`${reg.host}/big/blob:latest`]!.blobBytes).toBeGreaterThan(32 << 20);
  });

  it('skopeo copies an index to an OCI layout, verifying every blob', async () => {
    const dir = path.join(work, 'oci');
    const ref = `${reg.host}/app/web:1.0`;
    await skopeoCopy(ref, `oci:${dir}:web`, ['--all', '--preserve-digests']);
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(index.manifests[0]!.digest).toBe(fx.refs[ref]!.digest);
    const arm = await skopeoInspect(`oci:${dir}:web`, ['--override-arch', 'arm64', '--override-variant', 'v8']);
    expect(arm.Architecture).toBe('arm64');
  });

  it('test/whiteouts unpacks (umoci) to WHITEOUTS_TREE', async () => {
    const ref = `${reg.host}/test/whiteouts:latest`;
    expect(fx.rootfs[ref]).toBe(WHITEOUTS_TREE);
    const layout = path.join(work, 'wh-oci');
    await skopeoCopy(ref, `oci:${layout}:wh`);
    const bundle = path.join(work, 'wh-bundle');
    await umociUnpack(layout, 'wh', bundle);
    const root = path.join(bundle, 'rootfs');
    const seen: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const name of await readdir(path.join(root, rel))) {
        const p = rel ? `${rel}/${name}` : name;
        seen.push(p);
        if ((await lstat(path.join(root, p))).isDirectory()) await walk(p);
      }
    };
    await walk('');
    expect(seen.sort()).toEqual(Object.keys(WHITEOUTS_TREE.entries).sort());
    for (const [p, want] of Object.entries(WHITEOUTS_TREE.entries)) {
      const st = await lstat(path.join(root, p));
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
      expect(type, p).toBe(want.type);
      if (want.type !== 'symlink') expect(st.mode & 0o7777, p).toBe(want.mode);
      expect([st.uid, st.gid], p).toEqual([want.uid ?? 0, want.gid ?? 0]);
      if (want.content !== undefined) expect(await readFile(path.join(root, p), 'utf8'), p).toBe(want.content);
      if (want.target !== undefined) expect(await readlink(path.join(root, p)), p).toBe(want.target);
      if (want.hardlinkOf) expect(st.ino, p).toBe((await lstat(path.join(root, want.hardlinkOf))).ino);
    }
  });

  it('is deterministic: a second registry gets the same digests', async () => {
    const a = await buildLayer([{ type: 'file', path: 'x', content: 'same' }]);
    const b = await buildLayer([{ type: 'file', path: './x', content: 'same' }]);
    expect(a.digest).toBe(b.digest);
    const other = await startRegistry();
    try {
      const fx2 = await seedStandardFixtures(other.url, { skipBig: true });
      for (const ref of fx2.references) {
        if (ref.includes('/charts/webapp:')) continue; // its values name the registry host
        expect(fx2.refs[ref]!.digest, ref).toBe(fx.refs[ref.replace(other.host, reg.host)]!.digest);
      }
    } finally {
      await other.stop();
    }
  });
});

describe('auth variants', () => {
  it('htpasswd (bcrypt) registry: 401 without, 200 with credentials; push and skopeo with creds', async () => {
    const user = { username: 'alice', password: 's3cret pass' };
    const r = await startRegistry({ htpasswd: user });
    try {
      const anon = await request(`${r.url}/v2/`);
      await anon.body.dump();
      expect(anon.statusCode).toBe(401);
      expect(String(anon.headers['www-authenticate'])).toMatch(/^Basic /);
      const layer = await buildLayer([{ type: 'file', path: 'hello', content: 'hi' }]);
      const pushed = await pushImage({ url: r.url, ...user }, 'private/img', 'v1', { format: 'oci', layers: [layer] });
      const raw = await skopeoInspectRaw(`${r.host}/private/img:v1`, { creds: `${user.username}:${user.password}` });
      expect(sha(raw)).toBe(pushed.digest);
      await expect(skopeoInspectRaw(`${r.host}/private/img:v1`)).rejects.toThrow(/unauthorized|authentication required/i);
    } finally {
      await r.stop();
    }
  });

  it('token-auth registry over the seeded data: bearer flow works with skopeo', async () => {
    const ts = await startTokenServer({ users: { bob: 'pw' } });
    const r = await startRegistry({ dataDir: reg.dataDir, tokenAuth: ts.tokenAuth, readOnly: true });
    try {
      const anon = await request(`${r.url}/v2/`);
      await anon.body.dump();
      expect(anon.statusCode).toBe(401);
      expect(String(anon.headers['www-authenticate'])).toContain(`Bearer realm="${ts.realm}"`);
      const ref = `${r.host}/library/alpine:3.19`;
      expect(sha(await skopeoInspectRaw(ref, { creds: 'bob:pw' }))).toBe(fx.refs[`${reg.host}/library/alpine:3.19`]!.digest);
      await expect(skopeoInspectRaw(ref)).rejects.toThrow();
      expect(ts.requests().some((q) => q.user === 'bob' && q.scope.includes('repository:library/alpine:pull'))).toBe(true);
    } finally {
      await r.stop();
      await ts.stop();
    }
  });
});

describe('fault proxy', () => {
  let proxy: FaultProxy;
  let bigPath: string;
  let big: { digest: string; size: number };

  beforeAll(async () => {
    proxy = await startFaultProxy(reg.url);
    const bigRef = fx.refs[`${reg.host}/big/blob:latest`]!;
    const layerDigest = bigRef.layers![0]!;
    big = { digest: layerDigest, size: fx.blobs[layerDigest]!.size };
    bigPath = `/v2/big/blob/blobs/${layerDigest}`;
  });
  afterAll(async () => proxy?.stop());

  const get = async (p: string, headers: Record<string, string> = {}, base = proxy.url) => {
    const res = await request(`${base}${p}`, { headers });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  };

  it('passes through, counts bytes per path, and rewrites upload Locations to itself', async () => {
    proxy.setFaults([]);
    proxy.resetStats();
    const r = await get(bigPath);
    expect(r.status).toBe(200);
    expect(sha(r.body)).toBe(big.digest);
    const st = proxy.stats();
    expect(st.byPath[bigPath]).toEqual({ requests: 1, bytes: big.size });
    const up = await request(`${proxy.url}/v2/scratch/blobs/uploads/`, { method: 'POST' });
    await up.body.dump();
    expect(up.statusCode).toBe(202);
    expect(String(up.headers.location)).toMatch(new RegExp(`^(http://${proxy.host})?/v2/scratch/blobs/uploads/`));
  });

  it('a 429 rule fires count times with Retry-After, then requests pass', async () => {
    const m = `/v2/app/web/manifests/1.0`;
    proxy.setFaults([{ method: 'GET', path: /\/manifests\//, status: 429, retryAfter: 2, count: 1 }]);
    const accept = { accept: 'application/vnd.oci.image.index.v1+json' };
    const first = await get(m, accept);
    expect(first.status).toBe(429);
    expect(first.headers['retry-after']).toBe('2');
    const second = await get(m, accept);
    expect(second.status).toBe(200);
    expect(sha(second.body)).toBe(fx.refs[`${reg.host}/app/web:1.0`]!.digest);
    expect(proxy.remaining()).toEqual([0]);
  });

  it('dropAfterBytes cuts the body; corruptByteAt flips one byte', async () => {
    proxy.setFaults([{ method: 'GET', path: /\/blobs\/sha256:/, dropAfterBytes: 100_000, count: 1 }]);
    proxy.resetStats();
    await expect(get(bigPath)).rejects.toThrow();
    expect(proxy.stats().byPath[bigPath]!.bytes).toBe(100_000);
    proxy.setFaults([{ method: 'GET', path: /\/blobs\/sha256:/, corruptByteAt: 12345, count: 1 }]);
    const bad = await get(bigPath);
    expect(bad.body.length).toBe(big.size);
    expect(sha(bad.body)).not.toBe(big.digest);
    bad.body[12345]! ^= 0xff;
    expect(sha(bad.body)).toBe(big.digest);
  });

  it('honours Range normally; ignoreRange makes upstream answer 200 with everything', async () => {
    proxy.setFaults([]);
    proxy.resetStats();
    const part = await get(bigPath, { range: 'bytes=1000-' });
    expect(part.status).toBe(206);
    expect(part.body.length).toBe(big.size - 1000);
    proxy.setFaults([{ path: /\/blobs\//, ignoreRange: true, count: 1 }]);
    const whole = await get(bigPath, { range: 'bytes=1000-' });
    expect(whole.status).toBe(200);
    expect(whole.body.length).toBe(big.size);
    expect(proxy.stats().ranges).toEqual([
      { path: bigPath, range: 'bytes=1000-' },
      { path: bigPath, range: 'bytes=1000-' },
    ]);
  });

  it('delays, paces bandwidth, and redirects to another host without needing credentials', async () => {
    const small = fx.refs[`${reg.host}/test/whiteouts:latest`]!.config!;
    const smallPath = `/v2/test/whiteouts/blobs/${small}`;
    proxy.setFaults([{ path: smallPath, delayMs: 300, count: 1 }]);
    let t = Date.now();
    expect((await get(smallPath)).status).toBe(200);
    expect(Date.now() - t).toBeGreaterThanOrEqual(290);

    proxy.setFaults([{ path: /\/blobs\//, bandwidthBytesPerSec: 2 << 20 }]);
    t = Date.now();
    const r = await get(bigPath, { range: 'bytes=0-524287' });
    expect(r.body.length).toBe(512 << 10);
    expect(Date.now() - t).toBeGreaterThanOrEqual(200); // 512 KiB at 2 MiB/s ≈ 250 ms

    proxy.setFaults([{ method: 'GET', path: /\/blobs\//, redirectTo: 'secondary' }]);
    proxy.resetStats();
    const hop = await get(bigPath, { authorization: 'Bearer secret-token' });
    expect(hop.status).toBe(307);
    const loc = new URL(String(hop.headers.location));
    expect(loc.host).toBe(proxy.secondaryHost);
    const served = await get(loc.pathname + loc.search, {}, proxy.secondaryUrl); // a careful client drops Authorization
    expect(served.status).toBe(200);
    expect(sha(served.body)).toBe(big.digest);
    const st = proxy.stats();
    expect(st.authorization[proxy.host]).toEqual({ with: 1, without: 0 });
    expect(st.authorization[proxy.secondaryHost]).toEqual({ with: 0, without: 1 });
    proxy.setFaults([]);
  });

  it('skopeo works through the proxy; an injected 503 fails it once, then it passes', async () => {
    proxy.setFaults([{ method: 'GET', path: /\/blobs\//, status: 503, count: 1 }]);
    proxy.resetStats();
    const ref = `${proxy.host}/nested/deep/repo/tool:v2`;
    const dest = `oci:${path.join(work, 'via-proxy')}:tool`;
    await expect(skopeoCopy(ref, dest)).rejects.toThrow(/503/);
    await skopeoCopy(ref, dest);
    expect(proxy.stats().requests.filter((q) => q.status === 503)).toHaveLength(1);
    const r = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
    expect(sha(r.stdout)).toBe(fx.refs[`${reg.host}/nested/deep/repo/tool:v2`]!.digest);
  });
});
