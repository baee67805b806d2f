// Issue 16 items 1–3: bundles and the cache are untrusted input. Played as someone who can write a
// bundle (a USB disk from elsewhere) or a shared cache: symbolic links to files outside, relative
// links, linked directories, a same-size rewrite, a hard link to another file, linked partial/ and
// tmp/ directories, a cache another user owns, and a flipped byte pushed to a registry that checks
// nothing. Canaries are files outside the bundle and the cache whose marker bytes must never show
// up in an HTTP answer, an upload, an output or a registry's storage, and whose bytes and mtime
// must not change.
import { createHash } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { chmod, chown, cp, link, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CLI, ocisave, startCli, summaryOf } from './support/cli.js';
import { run } from './support/exec.js';
import { startLaxRegistry, type LaxRegistry } from './support/lax-registry.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { blobExists, buildLayer, pushImage, seededBytes, type BuiltLayer, type PushedManifest } from './fixtures/index.js';
import { startFaultProxy } from './support/proxy.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 180_000 });

const MARKER = 'CANARY-7f3e-DO-NOT-LEAK ';
const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const hexOf = (d: string) => d.slice('sha256:'.length);

let work: string;
let source: RunningRegistry;
let target: RunningRegistry;
/** A registry that accepts anything: what a push sends there is recorded byte for byte. */
let lax: LaxRegistry;
let image: PushedManifest;
let layers: BuiltLayer[];
let REF: string;
let cache: string;
let regBundle: string;
let ociBundle: string;
const stops: (() => Promise<unknown>)[] = [];

/** A file outside every bundle and cache: marker bytes, a known mtime; `check()` says it is untouched. */
interface Canary {
  path: string;
  bytes: Buffer;
  check(): Promise<void>;
}
const canaries: Canary[] = [];

async function canary(name: string, size: number, bytes?: Buffer): Promise<Canary> {
  const path = join(work, 'outside', name);
  await mkdir(join(work, 'outside'), { recursive: true });
  const b = bytes ?? Buffer.alloc(size, MARKER);
  await writeFile(path, b);
  const mtimeMs = (await stat(path)).mtimeMs;
  const c = {
    path,
    bytes: b,
    async check() {
      expect(await readFile(path), `${path} changed`).toEqual(b);
      expect((await stat(path)).mtimeMs, `${path} mtime`).toBe(mtimeMs);
    },
  };
  canaries.push(c);
  return c;
}

/** Every regular file under `dir` (links are not followed): none may hold the marker. */
async function expectNoMarker(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (st.isFile()) {
    expect((await readFile(dir)).includes(MARKER), `${dir} holds canary bytes`).toBe(false);
    return;
  }
  if (!st.isDirectory()) return;
  for (const e of await readdir(dir)) await expectNoMarker(join(dir, e));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-untrusted-'));
  source = await startRegistry();
  target = await startRegistry();
  lax = await startLaxRegistry();
  stops.push(() => source.stop(), () => target.stop(), () => lax.stop());
  // Three layers of incompressible bytes (stored, not compressed: sizes stay distinct and known).
  layers = await Promise.all(
    ['one', 'two', 'three'].map((n, i) => buildLayer([{ type: 'file', path: `data/${n}.bin`, content: seededBytes(`untrusted-${n}`, 40_000 + i * 7_000) }], { gzipLevel: 0 })),
  );
  image = await pushImage(source.url, 'sec/app', '1', { format: 'oci', layers });
  REF = `${source.host}/sec/app:1`;
  cache = join(work, 'cache');
  regBundle = join(work, 'bundle-reg');
  ociBundle = join(work, 'bundle-oci');
  for (const [out, format] of [[regBundle, 'registry'], [ociBundle, 'oci']] as const) {
    const r = await ocisave(['save', REF, '-o', out, '--format', format, '--cache', cache, '-q']);
    expect(r.code, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  for (const c of canaries) await c.check();
  await Promise.allSettled(stops.map((s) => s()));
  await rm(work, { recursive: true, force: true });
});

// --- bundles --------------------------------------------------------------------------

/** `ocisave serve` on a free port; the child and its address, or its exit code when it refused to start. */
async function serve(path: string): Promise<{ url: string; child: ChildProcess } | { code: number | null; stderr: string }> {
  const child = startCli(['serve', path, '--addr', '127.0.0.1:0', '--json']);
  stops.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve({ url: (JSON.parse(out.split('\n')[0]!) as { url: string }).url, child });
    });
    child.once('exit', (code) => resolve({ code, stderr: err }));
  });
}

async function get(url: string): Promise<{ status: number; body: Buffer }> {
  const res = await request(url, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' } });
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) };
}

const regData = (root: string, digest: string) => join(root, 'docker/registry/v2/blobs/sha256', hexOf(digest).slice(0, 2), hexOf(digest), 'data');

interface BundleCase {
  name: string;
  from: () => string;
  /** Plant the attack in a fresh copy of the bundle. */
  plant(dir: string): Promise<void>;
  /** What a client asks `serve` for: each must not be answered with 200. */
  asks: () => string[];
  /** The image's other blobs stay reachable (false when the attack hides the manifest that names them). */
  othersServed?: false;
  /** serve refuses to start instead of answering. */
  serveRefuses?: RegExp;
  /** push: exit status and a message naming what was refused. */
  push: () => { code: number; message: RegExp };
  verify: () => RegExp;
}

const L = (i: number) => layers[i]!.digest;
const blobUrl = (d: string) => `/v2/sec/app/blobs/${d}`;

const bundleCases: BundleCase[] = [
  {
    name: 'registry layout: a layer blob is a link to a same-size file outside',
    from: () => regBundle,
    async plant(dir) {
      const c = await canary('r1-layer', layers[1]!.size);
      await rm(regData(dir, L(1)));
      await symlink(c.path, regData(dir, L(1)));
    },
    asks: () => [blobUrl(L(1))],
    push: () => ({ code: 1, message: new RegExp(`blob ${L(1)} is neither in`) }),
    verify: () => /data is a symbolic link or special file; links inside a bundle are never followed/,
  },
  {
    name: 'registry layout: the manifest is a relative link out of the bundle',
    from: () => regBundle,
    async plant(dir) {
      const c = await canary('r2-manifest.json', 0, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], note: MARKER })));
      await rm(regData(dir, image.digest));
      // data sits 8 levels below the work directory: ../ × 8 leaves the bundle.
      await symlink(`${'../'.repeat(8)}outside/r2-manifest.json`, regData(dir, image.digest));
      expect((await readFile(regData(dir, image.digest))).equals(c.bytes), 'the relative link reaches the canary').toBe(true);
    },
    asks: () => ['/v2/sec/app/manifests/1', `/v2/sec/app/manifests/${image.digest}`, blobUrl(image.digest)],
    push: () => ({ code: 1, message: new RegExp(`manifest ${image.digest} is neither in`) }),
    verify: () => /symbolic link or special file/,
  },
  {
    name: "registry layout: a tag's link file is a link to a file outside",
    from: () => regBundle,
    async plant(dir) {
      const c = await canary('r3-link', 0, Buffer.from(image.digest));
      const path = join(dir, 'docker/registry/v2/repositories/sec/app/_manifests/tags/1/current/link');
      await rm(path);
      await symlink(c.path, path);
    },
    asks: () => ['/v2/sec/app/manifests/1'],
    // The manifest itself is in the bundle, so push carries it; the tag read through the link is not pushed.
    push: () => ({ code: 0, message: /current\/link is a symbolic link; links inside .* are never followed/ }),
    verify: () => /current\/link is a symbolic link/,
  },
  {
    name: "registry layout: a blob's directory is a link to a directory outside",
    from: () => regBundle,
    async plant(dir) {
      const hex = hexOf(L(2));
      const evil = join(work, 'outside', `r4-${Math.random().toString(36).slice(2)}`);
      await mkdir(join(evil, hex), { recursive: true });
      const c = await canary(`r4-${hex}`, layers[2]!.size);
      await writeFile(join(evil, hex, 'data'), c.bytes);
      const prefixDir = join(dir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2));
      await rm(prefixDir, { recursive: true });
      await symlink(evil, prefixDir);
    },
    asks: () => [blobUrl(L(2))],
    push: () => ({ code: 1, message: new RegExp(`blob ${L(2)} is neither in`) }),
    verify: () => /is a symbolic link or special file; links inside a bundle are never followed/,
  },
  {
    name: 'OCI layout: a layer blob is a link to a same-size file outside',
    from: () => ociBundle,
    async plant(dir) {
      const c = await canary('o1-layer', layers[1]!.size);
      await rm(join(dir, 'blobs/sha256', hexOf(L(1))));
      await symlink(c.path, join(dir, 'blobs/sha256', hexOf(L(1))));
    },
    asks: () => [blobUrl(L(1))],
    push: () => ({ code: 1, message: new RegExp(`blob ${L(1)} is neither in`) }),
    verify: () => new RegExp(`blobs/sha256/${hexOf(L(1))} is a symbolic link or special file`),
  },
  {
    name: 'OCI layout: the manifest is a relative link out of the layout',
    from: () => ociBundle,
    async plant(dir) {
      await canary('o2-manifest.json', 0, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], note: MARKER })));
      const path = join(dir, 'blobs/sha256', hexOf(image.digest));
      await rm(path);
      await symlink('../../../outside/o2-manifest.json', path);
      expect((await readFile(path)).includes(MARKER), 'the relative link reaches the canary').toBe(true);
    },
    asks: () => ['/v2/sec/app/manifests/1', `/v2/sec/app/manifests/${image.digest}`, blobUrl(image.digest)],
    othersServed: false,
    push: () => ({ code: 1, message: new RegExp(`manifest ${image.digest} is neither in`) }),
    verify: () => /is a symbolic link or special file/,
  },
  {
    name: 'OCI layout: index.json is a link to a file outside',
    from: () => ociBundle,
    async plant(dir) {
      const c = await canary('o3-index.json', 0, await readFile(join(dir, 'index.json')));
      await rm(join(dir, 'index.json'));
      await symlink(c.path, join(dir, 'index.json'));
    },
    asks: () => [],
    serveRefuses: /index\.json is a symbolic link/,
    push: () => ({ code: 1, message: /index\.json is a symbolic link/ }),
    verify: () => /index\.json is a symbolic link/,
  },
  {
    name: 'OCI layout: blobs/sha256 is a link to a directory outside',
    from: () => ociBundle,
    async plant(dir) {
      const evil = join(work, 'outside', `o4-${Math.random().toString(36).slice(2)}`);
      await cp(join(dir, 'blobs/sha256'), evil, { recursive: true });
      const c = await canary('o4-layer', layers[2]!.size);
      await rm(join(evil, hexOf(L(2))));
      await writeFile(join(evil, hexOf(L(2))), c.bytes);
      await rm(join(dir, 'blobs/sha256'), { recursive: true });
      await symlink(evil, join(dir, 'blobs/sha256'));
    },
    asks: () => [blobUrl(L(2)), '/v2/sec/app/manifests/1'],
    othersServed: false,
    push: () => ({ code: 1, message: new RegExp(`manifest ${image.digest} is neither in`) }),
    verify: () => /blobs\/sha256 is a symbolic link/,
  },
];

describe('a bundle with links in it', () => {
  for (const [i, c] of bundleCases.entries()) {
    it(`${c.name}: serve does not answer with its target, push refuses it, verify reports it`, async () => {
      const dir = join(work, `case-${i}`);
      await cp(c.from(), dir, { recursive: true });
      await c.plant(dir);

      const srv = await serve(dir);
      if (c.serveRefuses) {
        expect('code' in srv && srv.code, 'serve refuses to start').toBe(1);
        expect('stderr' in srv && srv.stderr).toMatch(c.serveRefuses);
      } else {
        expect('url' in srv, JSON.stringify(srv)).toBe(true);
        const url = (srv as { url: string }).url;
        for (const path of c.asks()) {
          const res = await get(`${url}${path}`);
          expect(res.status, path).toBe(404);
          expect(res.body.includes(MARKER), `${path} answered canary bytes`).toBe(false);
        }
        // What is not attacked is still served.
        if (c.othersServed !== false) expect((await get(`${url}${blobUrl(L(0))}`)).body).toEqual(layers[0]!.gz);
      }

      const p = await ocisave(['push', dir, '--to', `${target.host}/case-${i}`]);
      expect(p.code, p.stderr).toBe(c.push().code);
      expect(p.stderr + p.stdout).toMatch(c.push().message);
      // The same push to a registry that stores anything: not one canary byte is sent.
      const toLax = await ocisave(['push', dir, '--to', `${lax.host}/case-${i}`]);
      expect(toLax.code, toLax.stderr).toBe(c.push().code);
      expect(lax.received().includes(MARKER), 'canary bytes uploaded').toBe(false);

      const v = await ocisave(['verify', dir]);
      expect(v.code, v.stdout + v.stderr).toBe(1);
      expect(v.stdout + v.stderr).toMatch(c.verify());
    });
  }

  it("leaves no canary byte in the target registry's storage", async () => {
    await expectNoMarker(target.dataDir);
  });
});

// --- the cache ------------------------------------------------------------------------

const cacheBlob = (dir: string, digest: string) => join(dir, 'blobs/sha256', hexOf(digest));

/** A cache of its own holding the image. */
async function filledCache(name: string): Promise<string> {
  const dir = join(work, name);
  const r = await ocisave(['save', REF, '-o', join(work, `${name}-first`), '--cache', dir, '-q']);
  expect(r.code, r.stderr).toBe(0);
  return dir;
}

/** Save in each output format after `attack`, each must hold the right bytes; the cache is consistent afterwards. */
async function saveAfter(dir: string, label: string, attack: () => Promise<void>, formats: readonly string[] = ['docker', 'oci', 'registry']): Promise<void> {
  for (const format of formats) {
    await attack();
    const out = join(work, `${label}-${format}${format === 'docker' ? '.tar' : ''}`);
    const r = await ocisave(['save', REF, '-o', out, '--format', format, '--platform', 'linux/amd64', '--cache', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    // The damaged blob was fetched again.
    expect(summaryOf(r).downloaded.bytes, JSON.stringify(summaryOf(r))).toBe(layers[1]!.size);
    await expectNoMarker(out);
    const v = await ocisave(['verify', out]);
    expect(v.code, `${format}: ${v.stdout}${v.stderr}`).toBe(0);
    if (format === 'oci') {
      const st = await lstat(join(out, 'blobs/sha256', hexOf(L(1))));
      expect(st.isFile(), 'a regular file, never a hard-linked symlink').toBe(true);
      expect(sha(await readFile(join(out, 'blobs/sha256', hexOf(L(1)))))).toBe(L(1));
    }
    if (format === 'registry') {
      expect((await lstat(regData(out, L(1)))).isFile()).toBe(true);
      expect(sha(await readFile(regData(out, L(1))))).toBe(L(1));
    }
  }
  const cv = await ocisave(['cache', 'verify', '--cache', dir]);
  expect(cv.code, cv.stderr).toBe(0);
  expect(cv.stdout).toMatch(/all good/);
}

describe('a cache with its blobs tampered with', () => {
  it('a blob replaced by a link to a same-size file outside is fetched again, never read through', async () => {
    const dir = await filledCache('c-symlink');
    const c = await canary('c1-layer', layers[1]!.size);
    await saveAfter(dir, 'c-symlink', async () => {
      await rm(cacheBlob(dir, L(1)), { force: true });
      await symlink(c.path, cacheBlob(dir, L(1)));
    });
  });

  it('a blob rewritten in place with other bytes of the same size is hashed again and fetched again', async () => {
    const dir = await filledCache('c-rewrite');
    const bytes = Buffer.alloc(layers[1]!.size, MARKER);
    await saveAfter(dir, 'c-rewrite', async () => {
      const path = cacheBlob(dir, L(1));
      expect((await stat(path)).mode & 0o777, 'blob files are read-only').toBe(0o444);
      const ino = (await stat(path)).ino;
      await chmod(path, 0o644);
      await writeFile(path, bytes);
      expect((await stat(path)).ino, 'rewritten in place').toBe(ino);
    });
  });

  it('a blob replaced by a hard link to another file is hashed again and fetched again; that file is untouched', async () => {
    const dir = await filledCache('c-hardlink');
    const c = await canary('c3-layer', layers[1]!.size);
    await saveAfter(dir, 'c-hardlink', async () => {
      await rm(cacheBlob(dir, L(1)), { force: true });
      await link(c.path, cacheBlob(dir, L(1)));
    });
  });

  it('a link planted in an empty cache (no index record) is not adopted', async () => {
    const c = await canary('c4-layer', layers[1]!.size);
    // A new cache for each format: the plant must meet a cache that never held the blob.
    for (const format of ['docker', 'oci', 'registry']) {
      const dir = join(work, `c-planted-${format}`);
      await mkdir(join(dir, 'blobs/sha256'), { recursive: true });
      await symlink(c.path, cacheBlob(dir, L(1)));
      const out = join(work, `c-planted-${format}-out${format === 'docker' ? '.tar' : ''}`);
      const r = await ocisave(['save', REF, '-o', out, '--format', format, '--platform', 'linux/amd64', '--cache', dir, '-q']);
      expect(r.code, r.stderr).toBe(0);
      await expectNoMarker(out);
      expect((await ocisave(['verify', out])).code).toBe(0);
      expect((await lstat(cacheBlob(dir, L(1)))).isFile(), 'the link was replaced by the fetched blob').toBe(true);
      const cv = await ocisave(['cache', 'verify', '--cache', dir]);
      expect(cv.code, cv.stderr).toBe(0);
      expect(cv.stdout).toMatch(/all good/);
    }
  });
});

// --- push verifies what it sends ---------------------------------------------------------

/** A copy of the registry bundle with one byte of `digest`'s data flipped. */
async function flipped(name: string, digest: string, at: number): Promise<string> {
  const dir = join(work, name);
  await cp(regBundle, dir, { recursive: true });
  const path = regData(dir, digest);
  const bytes = await readFile(path);
  bytes[at] = bytes[at]! ^ 0xff;
  await rm(path);
  await writeFile(path, bytes);
  return dir;
}

describe('push verifies what it sends', () => {
  it('uploads a sound bundle in small chunks to a registry that checks nothing, every blob as its digest says', async () => {
    const r = await ocisave(['push', regBundle, '--to', `${lax.host}/sound`, '--chunk-size', '16KiB', '--jobs', '2']);
    expect(r.code, r.stderr).toBe(0);
    for (const d of [...layers.map((l) => l.digest), image.config!.digest]) {
      expect(sha(lax.blobs.get(`sound/sec/app@${d}`) ?? ''), d).toBe(d);
    }
    expect(lax.manifests.get(`sound/sec/app:1`)?.equals(image.bytes)).toBe(true);
  });

  it('a flipped byte is never committed at a registry that checks nothing: the upload is abandoned before its PUT, and push fails naming the blob', async () => {
    const dir = await flipped('flip-lax', L(1), 30_000); // in the second 16 KiB chunk
    const cancelled = lax.cancelled.length;
    const r = await ocisave(['push', dir, '--to', `${lax.host}/flipped`, '--chunk-size', '16KiB', '--jobs', '1']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`blob ${L(1)} in the bundle hashes to sha256:[a-f0-9]{64}: the bundle is damaged`));
    expect(lax.blobs.has(`flipped/sec/app@${L(1)}`), 'the damaged blob was committed').toBe(false);
    expect([...lax.manifests.keys()].filter((k) => k.startsWith('flipped/')), 'no manifest pushed').toEqual([]);
    expect(lax.cancelled.length, 'the upload session was cancelled').toBe(cancelled + 1);
  });

  it('a flipped byte in a manifest stops the push before any blob is sent', async () => {
    const dir = await flipped('flip-manifest', image.digest, 20);
    const sent = lax.received().length;
    const committed = lax.blobs.size;
    const r = await ocisave(['push', dir, '--to', `${lax.host}/flipped-manifest`]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`manifest ${image.digest} in the bundle hashes to sha256:[a-f0-9]{64}`));
    expect(lax.received().length, 'no byte uploaded').toBe(sent);
    expect(lax.blobs.size).toBe(committed);
  });

  it('against the real registry, the damaged blob is refused before it is committed and no later upload starts', async () => {
    const dir = await flipped('flip-real', L(1), 100);
    const fresh = await startRegistry();
    stops.push(() => fresh.stop());
    const proxy = await startFaultProxy(fresh.url);
    stops.push(() => proxy.stop());
    const r = await ocisave(['push', dir, '--to', `${proxy.host}/real`, '--jobs', '1']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout + r.stderr).toMatch(new RegExp(`blob ${L(1)} in the bundle hashes to`));
    // Not the registry's DIGEST_INVALID: the PUT of the damaged blob was never sent.
    const reqs = proxy.stats().requests;
    expect(reqs.filter((q) => q.method === 'PUT' && q.url.includes(encodeURIComponent(L(1)))), 'a PUT completing the damaged blob').toEqual([]);
    const cancel = reqs.findIndex((q) => q.method === 'DELETE' && q.path.includes('/blobs/uploads/'));
    expect(cancel, 'the upload session was cancelled').toBeGreaterThanOrEqual(0);
    expect(reqs.slice(cancel + 1).filter((q) => q.method === 'POST' || q.method === 'PATCH'), 'uploads after the damaged blob').toEqual([]);
    expect(await blobExists(fresh.url, 'real/sec/app', L(1))).toBe(false);
    const m = await request(`${fresh.url}/v2/real/sec/app/manifests/1`, { method: 'HEAD' });
    await m.body.dump();
    expect(m.statusCode, 'no manifest, no tag').toBe(404);
  });
});

// --- cache maintenance and a cache of another user ---------------------------------------

describe('cache prune and cache verify with partial/ or tmp/ a link to another directory', () => {
  for (const sub of ['partial', 'tmp'] as const) {
    it(`${sub}/ a link: prune refuses, verify replaces the link and leaves its target's files alone`, async () => {
      const dir = await filledCache(`m-${sub}`);
      // Files that look like cache litter: a stale partial download, a dead process's temp file.
      const elsewhere = join(work, 'outside', `m-${sub}-dir`);
      await mkdir(elsewhere, { recursive: true });
      const names = [hexOf(L(1)), 'blob.999999.1.abc', 'notes.txt'];
      const kept: Canary[] = [];
      for (const n of names) kept.push(await canary(`m-${sub}-dir/${n}`, 1000));
      await rm(join(dir, sub), { recursive: true });
      await symlink(elsewhere, join(dir, sub));

      const p = await ocisave(['cache', 'prune', '--older-than', '0s', '--cache', dir]);
      expect(p.code, p.stdout).toBe(1);
      expect(p.stderr.trim().split('\n')).toHaveLength(1);
      expect(p.stderr).toMatch(new RegExp(`cache .*: ${sub} is a symbolic link; ocisave never follows links in its cache`));
      for (const c of kept) await c.check();

      const v = await ocisave(['cache', 'verify', '--cache', dir]);
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout).toContain(`${sub} was a symbolic link: the link removed (its target untouched), an empty directory made`);
      for (const c of kept) await c.check();
      expect((await lstat(join(dir, sub))).isDirectory()).toBe(true);
      const again = await ocisave(['cache', 'verify', '--cache', dir]);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(/all good/);
    });
  }
});

const NOBODY = ['--reuid', 'nobody', '--regid', 'nogroup', '--clear-groups'];
const asNobody = (shell: string) => run('setpriv', [...NOBODY, 'sh', '-c', shell], { env: { HOME: '/nonexistent' } });

describe('a cache owned by another user', () => {
  it('is shared safely through a group: a setgid directory and umask 002 for every user', async () => {
    await chmod(work, 0o755);
    const dir = join(work, 'group-cache');
    await mkdir(dir);
    await chown(dir, 0, 65534);
    await chmod(dir, 0o2775);
    const first = await run('sh', ['-c', `umask 002; exec "${process.execPath}" "${CLI}" save ${REF} -o "${join(work, 'group-root-out')}" --cache "${dir}" -q`]);
    expect(first.code, first.stderr).toBe(0);
    const home = join(work, 'nobody-home');
    await mkdir(home);
    await chown(home, 65534, 65534);
    const out = join(home, 'oci');
    const second = await asNobody(`umask 002; exec "${process.execPath}" "${CLI}" save ${REF} -o "${out}" --format oci --cache "${dir}" --json`);
    expect(second.code, second.stderr).toBe(0);
    expect(summaryOf(second).downloaded.bytes, 'every blob reused from the shared cache').toBe(0);
    expect((await ocisave(['verify', out])).code).toBe(0);
    const cv = await ocisave(['cache', 'verify', '--cache', dir]);
    expect(cv.stdout).toMatch(/all good/);
  });

  it('fails closed with one line naming the cache and what to do, not an LMDB lock error', async () => {
    const dir = await filledCache('shared');
    // The test's temporary directory is private (mkdtemp: 0700); let the other user reach the cache.
    await chmod(work, 0o755);
    for (const args of [`cache ls --cache "${dir}"`, `save ${REF} -o "${join(work, 'nobody-out')}" --cache "${dir}"`]) {
      const r = await asNobody(`exec "${process.execPath}" "${CLI}" ${args}`);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`cache ${dir} is not writable by this user \\(uid 65534\\): .* belongs to uid 0, gid 0, mode 755; use a cache of your own \\(--cache DIR or OCISAVE_CACHE\\), or share one through a group`));
      expect(r.stderr).not.toMatch(/setup locks/);
    }
    const cv = await ocisave(['cache', 'verify', '--cache', dir]);
    expect(cv.stdout).toMatch(/all good/);
  });
});
