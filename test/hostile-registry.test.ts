// ocisave against registries that lie (test/support/hostile-registry.ts): every case ends with the
// right exit status and one error line, leaves the canary files beside the output untouched, peaks
// under 400 MB of RSS (from /proc), ends within a bound (the new time flags keep them short), and
// leaves the cache (and the output, when there is one) consistent for ocisave's own checks.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave } from './support/cli.js';
import { runMeasured, type Measured } from './support/measured.js';
import {
  descriptorOf,
  dribble,
  indexBytes,
  manifestBytes,
  MT,
  rawAnswer,
  sha256,
  startHostileRegistry,
  storm,
  type Descriptor,
  type HostileRegistry,
} from './support/hostile-registry.js';

const PEAK_RSS_KB = 400 * 1024;
/** Small limits, so that the slow and silent cases end in seconds (the defaults are 10/30/1024/30/5). */
const FAST = ['--connect-timeout', '2', '--header-timeout', '2', '--speed-limit', '200', '--speed-time', '1', '--retries', '2'];
const PASSWORD = 'hostile-test-secret-pw';

let reg: HostileRegistry;
let root: string;
let cache: string;
let canaries: Map<string, { bytes: string; mtimeMs: number }>;
let n = 0;

/** Bytes that do not compress and differ per call. */
function bytes(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0, h = sha256(seed); i < size; i += 32, h = sha256(h)) Buffer.from(h.slice(7), 'hex').copy(out, i);
  return out;
}

/** An image in `repo` tagged `tag`: a config and a layer, both served honestly. */
function image(repo: string, tag: string | undefined, layerSize = 1024): { desc: Descriptor; manifest: Buffer; layer: Buffer } {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, repo }));
  const layer = bytes(layerSize, `${repo}:${tag}`);
  reg.blob(repo, config);
  reg.blob(repo, layer);
  const manifest = manifestBytes(descriptorOf(config, MT.config), [descriptorOf(layer, MT.layer)]);
  reg.manifest(repo, manifest, MT.manifest, tag);
  return { desc: descriptorOf(manifest, MT.manifest), manifest, layer };
}

/** An honest config and manifest in `repo` tagged `tag` around `layer`, whose route the test sets itself. */
function imageAround(layer: Buffer, repo: string, tag: string): void {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', repo }));
  reg.blob(repo, config);
  reg.manifest(repo, manifestBytes(descriptorOf(config, MT.config), [descriptorOf(layer, MT.layer)]), MT.manifest, tag);
}

function snapshotCanaries(): Map<string, { bytes: string; mtimeMs: number }> {
  const out = new Map<string, { bytes: string; mtimeMs: number }>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, { bytes: readFileSync(p, 'hex'), mtimeMs: statSync(p).mtimeMs });
    }
  };
  walk(path.join(root, 'canary'));
  return out;
}

function errorLines(r: Measured): string[] {
  return (r.stderr + r.stdout).split('\n').filter((l) => l.startsWith('ocisave: error:') || l.startsWith('failed '));
}

/** An answer of `status` whose body is spaces, written as fast as the client reads, up to 64 MiB (far past any limit). */
function endless(res: http.ServerResponse, status: number, sent: { bytes: number }): void {
  res.writeHead(status, { 'content-type': MT.manifest });
  const chunk = Buffer.alloc(64 * 1024, ' ');
  let mine = 0;
  const more = () => {
    while (!res.destroyed && mine < 64 * 1024 * 1024) {
      mine += chunk.length;
      sent.bytes += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    res.end();
  };
  more();
}

/** What every case asserts, whatever its outcome. */
async function checkAftermath(r: Measured, out: string | undefined, maxMs: number): Promise<void> {
  // The figures, for the record: vitest prints them with the test's output.
  console.log(`[hostile] ${expect.getState().currentTestName}: exit ${r.code}, ${r.ms} ms, peak RSS ${(r.peakRssKb / 1024).toFixed(0)} MB`);
  expect(r.peakRssKb, 'peak RSS read from /proc').toBeGreaterThan(0);
  expect(r.peakRssKb).toBeLessThan(PEAK_RSS_KB);
  expect(r.ms).toBeLessThan(maxMs);
  expect(r.stderr + r.stdout).not.toContain(PASSWORD);
  expect(snapshotCanaries()).toEqual(canaries);
  // Only the output (when the case makes one) and the cache appear beside the canaries.
  const beside = readdirSync(root).sort();
  expect(beside.filter((e) => !['cache', 'canary', 'bundle-good'].includes(e) && !e.startsWith('out-'))).toEqual([]);
  if (out && r.code === 0) {
    const v = await ocisave(['verify', out, '--json'], { timeoutMs: maxMs });
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).ok).toBe(true);
  } else if (out) {
    expect(existsSync(out), 'a failed save writes no output').toBe(false);
  }
  const c = await ocisave(['cache', 'verify', '--cache', cache, '--json'], { timeoutMs: maxMs });
  expect(c.code, c.stderr).toBe(0);
  const report = JSON.parse(c.stdout);
  // No unverified or damaged blob ever entered the cache (partial downloads may be tidied).
  expect([report.corrupt, report.missing, report.removedFiles]).toEqual([[], [], []]);
}

async function save(ref: string, args: string[] = FAST, input?: string): Promise<{ r: Measured; out: string }> {
  const out = path.join(root, `out-${++n}`);
  const r = await runMeasured(['save', ref, '-o', out, '--cache', cache, '-q', ...args], { input, timeoutMs: 150_000 });
  return { r, out };
}

beforeAll(async () => {
  reg = await startHostileRegistry();
  root = mkdtempSync(path.join(os.tmpdir(), 'ocisave-hostile-'));
  cache = path.join(root, 'cache');
  mkdirSync(path.join(root, 'canary', 'deep'), { recursive: true });
  writeFileSync(path.join(root, 'canary', 'keep.txt'), 'canary beside the output\n');
  writeFileSync(path.join(root, 'canary', 'deep', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  canaries = snapshotCanaries();
});

afterAll(async () => {
  await reg?.stop();
  if (root) await rm(root, { recursive: true, force: true });
}, 300_000);

describe('junk digests and sizes are refused before they name a request', () => {
  const junk: { name: string; make: () => Buffer; mediaType: string; error: RegExp; neverAsked?: RegExp }[] = [
    {
      name: 'index-entry-tag',
      make: () => indexBytes([{ mediaType: MT.manifest, digest: 'latest', size: 10 }]),
      mediaType: MT.index,
      error: /index sha256:[0-9a-f]{64} manifests\[0\]: "latest" is not a digest/,
      neverAsked: /manifests\/latest/,
    },
    {
      name: 'index-entry-sha512',
      make: () => indexBytes([{ mediaType: MT.manifest, digest: `sha512:${'ab'.repeat(64)}`, size: 10 }]),
      mediaType: MT.index,
      error: /manifests\[0\]: digest "sha512:abab.*uses an algorithm ocisave does not verify/,
      neverAsked: /manifests\/sha512:/,
    },
    {
      name: 'config',
      make: () => manifestBytes({ mediaType: MT.config, digest: 'sha256:../../../etc/passwd', size: 10 }, []),
      mediaType: MT.manifest,
      error: /manifest sha256:[0-9a-f]{64} config: "sha256:\.\.\/\.\.\/\.\.\/etc\/passwd" is not a digest/,
      neverAsked: /etc\/passwd|\.\./,
    },
    {
      name: 'layer',
      make: () => {
        const config = Buffer.from('{}');
        reg.blob('junk/layer', config);
        return manifestBytes(descriptorOf(config, MT.config), [descriptorOf(config, MT.layer), { mediaType: MT.layer, digest: 'SHA256:ABC', size: 3 }]);
      },
      mediaType: MT.manifest,
      error: /layers\[1\]: "SHA256:ABC" is not a digest/,
      neverAsked: /ABC/,
    },
    {
      name: 'subject',
      make: () => manifestBytes({ mediaType: MT.config, digest: sha256('{}'), size: 2 }, [], { subject: { mediaType: MT.manifest, digest: 'latest', size: 1 } }),
      mediaType: MT.manifest,
      error: /subject: "latest" is not a digest/,
    },
    {
      name: 'negative-size',
      make: () => manifestBytes({ mediaType: MT.config, digest: sha256('{}'), size: -1 }, []),
      mediaType: MT.manifest,
      error: /config: size -1 is not a non-negative integer/,
    },
    {
      name: 'size-2-62',
      // 2^62 as JSON text: a double past 2^53, which no byte count can be.
      make: () => Buffer.from(manifestBytes({ mediaType: MT.config, digest: sha256('{}'), size: 2 }, [{ mediaType: MT.layer, digest: sha256('x'), size: '__HUGE__' }]).toString().replace('"__HUGE__"', '4611686018427387904')),
      mediaType: MT.manifest,
      error: /layers\[0\]: size 4611686018427388000 is past 2\^53 bytes, more than any blob can be/,
    },
  ];
  for (const c of junk) {
    it(`${c.name}: exit 1, one line, nothing fetched by it`, async () => {
      reg.manifest(`junk/${c.name}`, c.make(), c.mediaType, 'v1');
      const { r, out } = await save(`${reg.host}/junk/${c.name}:v1`);
      expect(r.code, r.stderr).toBe(1);
      const lines = errorLines(r);
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(c.error);
      if (c.neverAsked) expect(reg.requests.filter((q) => c.neverAsked!.test(q))).toEqual([]);
      // Nothing but the tag's manifest was asked for: no blob of a refused manifest.
      expect(reg.count(new RegExp(`/v2/junk/${c.name}/blobs/`))).toBe(0);
      await checkAftermath(r, out, 60_000);
    });
  }
});

describe('index graphs that never end', () => {
  it('an index naming itself by tag, and one served for a digest it does not hash to: refused', async () => {
    // The index's entry names the tag it is served under: fetched as a tag, this recursed forever.
    reg.manifest('cycle/self', indexBytes([{ mediaType: MT.index, digest: 'v1', size: 100 }]), MT.index, 'v1');
    const self = await save(`${reg.host}/cycle/self:v1`);
    expect(self.r.code).toBe(1);
    expect(errorLines(self.r)).toHaveLength(1);
    expect(errorLines(self.r)[0]).toMatch(/manifests\[0\]: "v1" is not a digest/);
    expect(reg.count(/cycle\/self\/manifests\/v1/)).toBe(1);
    await checkAftermath(self.r, self.out, 60_000);

    // A "cycle" by digest: the entry's digest answered with the index itself (it cannot hash to it).
    const fake = sha256('not the index');
    const idx = indexBytes([{ mediaType: MT.index, digest: fake, size: 100 }]);
    reg.manifest('cycle/lie', idx, MT.index, 'v1');
    reg.route('GET', `/v2/cycle/lie/manifests/${fake}`, (_req, res) => res.writeHead(200, { 'content-type': MT.index }).end(idx));
    const lie = await save(`${reg.host}/cycle/lie:v1`);
    expect(lie.r.code).toBe(1);
    expect(errorLines(lie.r)).toHaveLength(1);
    expect(errorLines(lie.r)[0]).toMatch(new RegExp(`cycle/lie@${fake}: the registry sent a manifest whose digest is ${sha256(idx)}`));
    await checkAftermath(lie.r, lie.out, 60_000);
  });

  it('indexes nested 12 deep: refused, naming the chain', async () => {
    let d = image('deep/app', undefined).desc;
    const chain: string[] = [];
    for (let i = 0; i < 12; i++) {
      const idx = indexBytes([d], { annotations: { level: String(i) } });
      reg.manifest('deep/app', idx, MT.index, i === 11 ? 'v1' : undefined);
      d = descriptorOf(idx, MT.index);
      chain.unshift(d.digest);
    }
    const { r, out } = await save(`${reg.host}/deep/app:v1`);
    expect(r.code).toBe(1);
    const lines = errorLines(r);
    expect(lines).toHaveLength(1);
    // The first 9 of the chain, root first (the 9th is one past the bound of 8).
    const shown = chain.slice(0, 9).map((x) => `${x.slice(0, 19)}…`).join(' → ');
    expect(lines[0]).toContain(`indexes nested deeper than 8: ${shown}`);
    expect(reg.count(/deep\/app\/blobs\//)).toBe(0);
    await checkAftermath(r, out, 60_000);
  });

  it('an index of 10,000 manifests: saved, verified, in bounded memory', async () => {
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
    const layer = bytes(512, 'wide');
    reg.blob('wide/app', config);
    reg.blob('wide/app', layer);
    const entries: Descriptor[] = [];
    for (let i = 0; i < 10_000; i++) {
      const m = manifestBytes(descriptorOf(config, MT.config), [descriptorOf(layer, MT.layer)], { annotations: { n: String(i) } });
      reg.manifest('wide/app', m, MT.manifest);
      entries.push(descriptorOf(m, MT.manifest));
    }
    reg.manifest('wide/app', indexBytes(entries), MT.index, 'v1');
    const { r, out } = await save(`${reg.host}/wide/app:v1`, ['--json']);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!).manifests).toBe(10_001);
    expect(reg.count(/wide\/app\/manifests\/sha256:/)).toBe(10_000);
    await checkAftermath(r, out, 240_000);
    await rm(out, { recursive: true, force: true }); // 10,001 revision links: not left for afterAll

  }, 300_000);

  it('a layer declaring 2^52 bytes (a safe integer) plans 1,024 ranges, fails in one line, low RSS', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const layer = bytes(4096, 'huge');
    reg.blob('huge/app', config);
    reg.blob('huge/app', layer);
    reg.manifest('huge/app', manifestBytes(descriptorOf(config, MT.config), [{ mediaType: MT.layer, digest: sha256(layer), size: 2 ** 52 }]), MT.manifest, 'v1');
    const { r, out } = await save(`${reg.host}/huge/app:v1`);
    expect(r.code).toBe(1);
    const lines = errorLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`blob ${sha256(layer)}`);
    await checkAftermath(r, out, 60_000);
  });
});

describe('Content-Length lies', () => {
  it('a blob declared longer than what is sent: the bytes that came are verified and kept', async () => {
    const layer = bytes(100 * 1024, 'cl-more');
    imageAround(layer, 'cl/more', 'v2');
    reg.route('GET', `/v2/cl/more/blobs/${sha256(layer)}`, (req) => rawAnswer(req, layer.length * 2, layer));
    const { r, out } = await save(`${reg.host}/cl/more:v2`);
    expect(r.code, r.stderr).toBe(0);
    await checkAftermath(r, out, 60_000);
  });

  it('a blob declared shorter than it is: retried, then one line', async () => {
    const layer = bytes(100 * 1024, 'cl-less');
    imageAround(layer, 'cl/less', 'v1');
    reg.route('GET', `/v2/cl/less/blobs/${sha256(layer)}`, (req) => rawAnswer(req, layer.length / 2, layer));
    const { r, out } = await save(`${reg.host}/cl/less:v1`);
    expect(r.code).toBe(1);
    const lines = errorLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`blob ${sha256(layer)}: .*connection ended at 51200 of 102400 bytes`));
    // The first answer, and one per retry (--retries 2): each a GET, none a partial blob in the cache.
    expect(reg.count(new RegExp(`cl/less/blobs/${sha256(layer)}`))).toBe(3);
    await checkAftermath(r, out, 60_000);
  });

  it('a manifest by tag that never ends: cut at 4 MiB, one line, bounded memory', async () => {
    const sent = { bytes: 0 };
    reg.route('GET', '/v2/cl/endless/manifests/v1', (_req, res) => endless(res, 200, sent));
    const { r, out } = await save(`${reg.host}/cl/endless:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toEqual([expect.stringMatching(/cl\/endless:v1: .*response larger than 4194304 bytes/)]);
    // The client hung up soon after the limit: the server did not get to send its 64 MiB.
    expect(sent.bytes).toBeLessThan(16 * 1024 * 1024);
    await checkAftermath(r, out, 60_000);
  });

  it('a manifest declared shorter than it is: one line', async () => {
    const m = manifestBytes({ mediaType: MT.config, digest: sha256('{}'), size: 2 }, []);
    reg.route('GET', '/v2/cl/manifest/manifests/v1', (req) => rawAnswer(req, m.length - 20, m, MT.manifest));
    const { r, out } = await save(`${reg.host}/cl/manifest:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(/cl\/manifest:v1: manifest is not valid JSON/);
    await checkAftermath(r, out, 60_000);
  });
});

describe('429 and 5xx storms', () => {
  it('503 for ever, no Retry-After: --retries 2 means three requests, then one line', async () => {
    reg.route('GET', '/v2/storm/503/manifests/v1', storm(503, undefined, Infinity));
    const { r, out } = await save(`${reg.host}/storm/503:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(/storm\/503:v1: registry answered HTTP 503/);
    expect(reg.count(/storm\/503\/manifests/)).toBe(3);
    await checkAftermath(r, out, 60_000);
  });

  it('503 with a body that never ends: the body dropped, the connection too, retried, then one line', async () => {
    const sent = { bytes: 0 };
    reg.route('GET', '/v2/storm/endless/manifests/v1', (_req, res) => endless(res, 503, sent));
    const { r, out } = await save(`${reg.host}/storm/endless:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toEqual([expect.stringMatching(/storm\/endless:v1: registry answered HTTP 503/)]);
    expect(reg.count(/storm\/endless\/manifests/)).toBe(3);
    // Three answers, each cut by the client soon after 128 KiB, not read to the 64 MiB each would send.
    expect(sent.bytes).toBeLessThan(3 * 16 * 1024 * 1024);
    await checkAftermath(r, out, 60_000);
  });

  it('429 with Retry-After: 1 for ever: honoured, then one line', async () => {
    reg.route('GET', '/v2/storm/429/manifests/v1', storm(429, '1', Infinity));
    const { r, out } = await save(`${reg.host}/storm/429:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)[0]).toMatch(/storm\/429:v1: registry answered HTTP 429/);
    expect(reg.count(/storm\/429\/manifests/)).toBe(3);
    // Two waits of the second Retry-After asked for.
    expect(r.ms).toBeGreaterThan(2_000);
    await checkAftermath(r, out, 60_000);
  });

  it('a storm that passes (two 429s, two 503s on a blob): saved', async () => {
    const { manifest, layer } = image('storm/pass', undefined, 100 * 1024);
    reg.route('GET', '/v2/storm/pass/manifests/v1', storm(429, '0', 2, (_req, res) => res.writeHead(200, { 'content-type': MT.manifest }).end(manifest)));
    reg.route('GET', `/v2/storm/pass/blobs/${sha256(layer)}`, storm(503, undefined, 2, (_req, res) => res.writeHead(200).end(layer)));
    const { r, out } = await save(`${reg.host}/storm/pass:v1`);
    expect(r.code, r.stderr).toBe(0);
    expect(reg.count(/storm\/pass\/manifests\/v1/)).toBe(3);
    expect(reg.count(new RegExp(`storm/pass/blobs/${sha256(layer)}`))).toBe(3);
    await checkAftermath(r, out, 60_000);
  });
});

describe('slow and silent registries', () => {
  it('a manifest at 1 byte/s: dropped by the low-speed rule, retried, one line', async () => {
    const m = manifestBytes({ mediaType: MT.config, digest: sha256('{}'), size: 2 }, []);
    reg.route('GET', '/v2/slow/manifest/manifests/v1', (_req, res) => dribble(res, m, { 'content-type': MT.manifest }));
    const { r, out } = await save(`${reg.host}/slow/manifest:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(/transfer slower than 200 bytes\/s for 1 s \(--speed-limit, --speed-time\) after 3 attempts/);
    await checkAftermath(r, out, 60_000);
  });

  it('a blob at 1 byte/s: dropped, resumed, given up on after --retries, one line', async () => {
    const layer = bytes(100 * 1024, 'slow-blob');
    imageAround(layer, 'slow/blob', 'v1');
    reg.route('GET', `/v2/slow/blob/blobs/${sha256(layer)}`, (_req, res) => dribble(res, layer, {}));
    const { r, out } = await save(`${reg.host}/slow/blob:v1`);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(new RegExp(`blob ${sha256(layer)}: .*transfer slower than 200 bytes/s for 1 s`));
    expect(reg.count(new RegExp(`slow/blob/blobs/${sha256(layer)}`))).toBe(3);
    await checkAftermath(r, out, 60_000);
  });

  it('a blob that is never answered: two header timeouts in the download worker, one line', async () => {
    const layer = bytes(100 * 1024, 'silent-blob');
    imageAround(layer, 'silent/blob', 'v1');
    reg.route('GET', `/v2/silent/blob/blobs/${sha256(layer)}`, () => undefined);
    const { r, out } = await save(`${reg.host}/silent/blob:v1`, [...FAST, '--header-timeout', '1', '--retries', '5']);
    expect(r.code).toBe(1);
    expect(errorLines(r)).toHaveLength(1);
    expect(errorLines(r)[0]).toMatch(new RegExp(`blob ${sha256(layer)}: .*Headers Timeout Error`));
    // Two tries, not the six --retries 5 would allow.
    expect(reg.count(new RegExp(`silent/blob/blobs/${sha256(layer)}`))).toBe(2);
    await checkAftermath(r, out, 30_000);
  });

  it('a server that accepts and never answers: --header-timeout, one line', async () => {
    const silent = await startHostileRegistry({ silent: true });
    try {
      const { r, out } = await save(`${silent.host}/any/thing:v1`, [...FAST, '--header-timeout', '1']);
      expect(r.code).toBe(1);
      expect(errorLines(r)).toHaveLength(1);
      expect(errorLines(r)[0]).toMatch(new RegExp(`cannot reach ${silent.host} .*UND_ERR_HEADERS_TIMEOUT after 2 attempts`));
      // The ping, then two tries of the manifest: a timeout is retried once, whatever --retries says.
      expect(silent.requests).toHaveLength(3);
      await checkAftermath(r, out, 30_000);
    } finally {
      await silent.stop();
    }
  });
});

describe('credentials never go in clear to a host not asked for', () => {
  it('a bearer realm on http://realm.invalid: refused before any connection; the password never leaves', async () => {
    // net-guard resolves .invalid names to 127.0.0.1: a connection to the realm would land here and be counted.
    const guarded = await startHostileRegistry({ challenge: (port) => `Bearer realm="http://realm.invalid:${port}/token",service="hostile"`, requireAuth: 'Bearer never' });
    try {
      const { r, out } = await save(`${guarded.host}/private/app:v1`, [...FAST, '--username', 'alice', '--password-stdin'], PASSWORD);
      expect(r.code).toBe(1);
      expect(errorLines(r)).toHaveLength(1);
      expect(errorLines(r)[0]).toMatch(
        /refusing to send the credentials for 127\.0\.0\.1:\d+ in clear to realm\.invalid:\d+ \(its token realm http:\/\/realm\.invalid:\d+\/token is plain http:\/\/\): the token server must use https:\/\//,
      );
      expect(guarded.count(/\/token/)).toBe(0);
      expect(guarded.authorizations).toEqual([]);
      await checkAftermath(r, out, 30_000);
    } finally {
      await guarded.stop();
    }
  });

  it('a bearer realm on http://127.1 (loopback, spelt short): credentials go, and the save works', async () => {
    const basic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
    const realm = await startHostileRegistry({ challenge: (port) => `Bearer realm="http://127.1:${port}/token",service="hostile"`, requireAuth: 'Bearer good-token' });
    try {
      realm.route('GET', '/token', (req, res) => {
        if (req.headers.authorization !== basic) return void res.writeHead(401).end('{}');
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'good-token', expires_in: 300 }));
      });
      const config = Buffer.from('{"architecture":"amd64","os":"linux","realm":1}');
      realm.blob('private/app', config);
      realm.manifest('private/app', manifestBytes(descriptorOf(config, MT.config), []), MT.manifest, 'v1');
      const { r, out } = await save(`${realm.host}/private/app:v1`, [...FAST, '--username', 'alice', '--password-stdin'], PASSWORD);
      expect(r.code, r.stderr).toBe(0);
      expect(realm.count(/^GET \/token\?/)).toBeGreaterThan(0);
      expect(realm.authorizations).toContain(basic);
      await checkAftermath(r, out, 60_000);
    } finally {
      await realm.stop();
    }
  });

  it('push: the same refusal for a target whose realm is http://realm.invalid', async () => {
    const bundle = await goodBundle();
    const guarded = await startHostileRegistry({ challenge: (port) => `Bearer realm="http://realm.invalid:${port}/token",service="hostile"`, requireAuth: 'Bearer never' });
    try {
      const r = await runMeasured(['push', bundle, '--to', guarded.host, '--username', 'alice', '--password-stdin', ...FAST], { input: PASSWORD });
      expect(r.code).toBe(1);
      expect(errorLines(r)).toHaveLength(1);
      expect(errorLines(r)[0]).toMatch(/refusing to send the credentials for 127\.0\.0\.1:\d+ in clear to realm\.invalid:\d+/);
      expect(guarded.count(/\/token|blobs/)).toBe(0);
      await checkAftermath(r, undefined, 30_000);
    } finally {
      await guarded.stop();
    }
  });
});

let good: string | undefined;
/** A registry-layout bundle of one small image, saved from the hostile registry's honest corner. */
async function goodBundle(): Promise<string> {
  if (good) return good;
  image('good/app', 'v1', 100 * 1024);
  const out = path.join(root, 'bundle-good');
  const r = await ocisave(['save', `${reg.host}/good/app:v1`, '-o', out, '--cache', cache, '-q']);
  expect(r.code, r.stderr).toBe(0);
  return (good = out);
}

describe('push deadlines', () => {
  it('a target that never answers a POST: two header timeouts per request end it, whatever --retries says', async () => {
    const bundle = await goodBundle();
    const target = await startHostileRegistry();
    try {
      target.route('POST', /^\/v2\/.+\/blobs\/uploads\/$/, () => undefined); // accepted, never answered
      // A retry budget far from the two 1 s timeouts: under load a 3 s budget ran out before the second attempt.
      const r = await runMeasured(['push', bundle, '--to', target.host, '--json', '--header-timeout', '1', '--retries', '20', '--retry-budget', '60']);
      expect(r.code).toBe(1);
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(summary.failures).toHaveLength(1);
      expect(summary.failures[0].error).toMatch(/^cannot reach 127\.0\.0\.1:\d+ \(127\.0\.0\.1:\d+\/good\/app\): UND_ERR_HEADERS_TIMEOUT after 2 attempts/);
      expect(summary.failures[0].error).not.toContain('\n');
      // Two per blob (config and layer start together), not the 21 --retries alone would allow.
      expect(target.count(/^POST /)).toBeLessThanOrEqual(4);
      await checkAftermath(r, undefined, 40_000);
    } finally {
      await target.stop();
    }
  });

  it('a target that opens uploads but never answers a PATCH: the same budget ends it', async () => {
    const bundle = await goodBundle();
    const target = await startHostileRegistry();
    try {
      let id = 0;
      target.route('POST', /^\/v2\/(.+)\/blobs\/uploads\/$/, (_req, res, m) => {
        res.writeHead(202, { location: `/v2/${m[1]}/blobs/uploads/u${++id}`, range: '0-0', 'content-length': 0 }).end();
      });
      target.route('PATCH', /^\/v2\/.+\/blobs\/uploads\/u\d+$/, () => undefined); // never answered
      target.route('GET', /^\/v2\/.+\/blobs\/uploads\/u\d+$/, (_req, res) => res.writeHead(204, { range: '0-0' }).end());
      const r = await runMeasured(['push', bundle, '--to', target.host, '--json', '--header-timeout', '1', '--retries', '20', '--retry-budget', '3']);
      expect(r.code).toBe(1);
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(summary.failures).toHaveLength(1);
      expect(summary.failures[0].error).toMatch(/uploading sha256:[0-9a-f]{64} failed \(gave up after \d+ s of failed attempts and retries \(--retry-budget 3\)\): /);
      expect(target.count(/^PATCH /)).toBeLessThan(10);
      await checkAftermath(r, undefined, 40_000);
    } finally {
      await target.stop();
    }
  });
});
