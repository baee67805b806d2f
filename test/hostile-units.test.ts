// Unit tests for the edge checks the hostile-registry tests exercise end to end: loopback spellings
// and when credentials may go in clear, the digest grammar, the segment planner's bound, the
// low-speed watch, and the resolver's index cycle, depth and count limits (given a registry that
// answers any digest with whatever it likes, which no honest hashing allows end to end).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clearTextAllowed, isLoopbackHost } from '../src/registry/hosts.js';
import { checkDigest, checkSize } from '../src/ref/digest.js';
import { MAX_SEGMENTS, segmentsOf } from '../src/engine/scheduler.js';
import { LowSpeedError, SpeedWatch } from '../src/registry/timeouts.js';
import { MAX_INDEX_DEPTH, MAX_MANIFESTS_PER_INPUT, Resolver } from '../src/resolve/resolve.js';
import type { Cache } from '../src/cache/cache.js';
import type { FetchedManifest, RegistryClient } from '../src/registry/client.js';
import { parseReference } from '../src/ref/reference.js';

describe('isLoopbackHost', () => {
  const loopback = [
    '127.0.0.1', '127.0.0.1:5000', '127.1', '127.1:5000', '127.0.1', '127.255.255.254', '0x7f.1', '2130706433',
    '::1', '[::1]', '[::1]:5000', '0:0:0:0:0:0:0:1', '[0:0:0:0:0:0:0:1]:80', '::ffff:127.0.0.1', '[::ffff:127.0.0.1]:5000', '[::ffff:127.9.8.7]',
    'localhost', 'localhost:5000', 'LOCALHOST', 'localhost.',
  ];
  const other = [
    '128.0.0.1', '10.0.0.1', '0.0.0.0', '[::]', '::2', '[::ffff:10.0.0.1]', '127.0.0.1.nip.io', '127.0.0.1.invalid', 'realm.invalid',
    'evil.localhost', 'localhost.invalid', 'registry-1.docker.io', '', 'not a host',
  ];
  for (const h of loopback) it(`${JSON.stringify(h)} is loopback`, () => expect(isLoopbackHost(h)).toBe(true));
  for (const h of other) it(`${JSON.stringify(h)} is not loopback`, () => expect(isLoopbackHost(h)).toBe(false));
});

describe('clearTextAllowed (credentials over http://)', () => {
  it('https always; http to loopback always', () => {
    expect(clearTextAllowed(new URL('https://auth.example.invalid/token'), 'registry.example.invalid', false)).toBe(true);
    expect(clearTextAllowed(new URL('http://127.1:8080/token'), 'registry.example.invalid', false)).toBe(true);
    expect(clearTextAllowed(new URL('http://[::ffff:127.0.0.1]/token'), 'registry.example.invalid', false)).toBe(true);
  });
  it('an http realm on another host from an HTTPS registry: never, even with --plain-http', () => {
    expect(clearTextAllowed(new URL('http://realm.invalid/token'), 'registry.example.invalid', false)).toBe(false);
    expect(clearTextAllowed(new URL('http://realm.invalid/token'), 'registry.example.invalid', true)).toBe(false);
  });
  it('an http realm on the registry host itself: only when the user asked plain HTTP (any port)', () => {
    expect(clearTextAllowed(new URL('http://registry.example.invalid:5001/token'), 'registry.example.invalid:5000', false)).toBe(false);
    expect(clearTextAllowed(new URL('http://registry.example.invalid:5001/token'), 'registry.example.invalid:5000', true)).toBe(true);
  });
});

describe('digest grammar at the edge', () => {
  it('refuses tags, other algorithms, upper case and paths, naming the field', () => {
    expect(() => checkDigest('latest', 'manifests[0]')).toThrow('manifests[0]: "latest" is not a digest (expected sha256:<64 lowercase hex>)');
    expect(() => checkDigest(`sha512:${'ab'.repeat(64)}`, 'manifests[1]')).toThrow(/manifests\[1\]: digest "sha512:abab.*" uses an algorithm ocisave does not verify \(only sha256\)/);
    expect(() => checkDigest(`sha256:${'AB'.repeat(32)}`, 'config')).toThrow(/config: .* is not a digest/);
    expect(() => checkDigest('sha256:../../etc/passwd', 'layers[0]')).toThrow(/layers\[0\]: .* is not a digest/);
    expect(checkDigest(`sha256:${'ab'.repeat(32)}`, 'x')).toBe(`sha256:${'ab'.repeat(32)}`);
  });
  it('refuses sizes that are not non-negative safe integers', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '12', null]) expect(() => checkSize(bad, 'layers[0]')).toThrow(/layers\[0\]: size .* is not a non-negative integer/);
    expect(() => checkSize(2 ** 62, 'layers[0]')).toThrow('layers[0]: size 4611686018427388000 is past 2^53 bytes, more than any blob can be');
    expect(checkSize(2 ** 52, 'layers[0]')).toBe(2 ** 52);
  });
});

describe('segmentsOf', () => {
  const MiB = 1024 * 1024;
  it('splits into ranges of the segment size, covering the blob exactly', () => {
    expect(segmentsOf(100 * MiB, 32 * MiB)).toEqual([
      [0, 32 * MiB],
      [32 * MiB, 64 * MiB],
      [64 * MiB, 96 * MiB],
      [96 * MiB, 100 * MiB],
    ]);
    expect(segmentsOf(63 * MiB, 32 * MiB)).toEqual([]);
    expect(segmentsOf(100 * MiB, 0)).toEqual([]);
  });
  it('plans at most MAX_SEGMENTS ranges whatever the declared size, without allocating for it', () => {
    const before = process.memoryUsage().rss;
    for (const size of [2 ** 40, 2 ** 52, Number.MAX_SAFE_INTEGER]) {
      const s = segmentsOf(size, 32 * MiB);
      expect(s.length).toBeLessThanOrEqual(MAX_SEGMENTS);
      expect(s[0]![0]).toBe(0);
      expect(s.at(-1)![1]).toBe(size);
      for (let i = 1; i < s.length; i++) expect(s[i]![0]).toBe(s[i - 1]![1]);
    }
    // Sizes no descriptor may have (checkSize refuses them first) plan nothing at all.
    expect(segmentsOf(2 ** 62, 32 * MiB)).toEqual([]);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * MiB);
  });
});

describe('SpeedWatch', () => {
  const limits = { connectTimeoutMs: 1000, headersTimeoutMs: 1000, speedLimit: 1000, speedTimeMs: 50, retries: 0 };
  it('calls onSlow once when a window sees fewer bytes than the limit asks', async () => {
    const slow = await new Promise<LowSpeedError>((resolve) => {
      const w = new SpeedWatch(limits, resolve);
      w.add(10); // 10 bytes in a 50 ms window: 200 B/s against 1000
    });
    expect(slow).toBeInstanceOf(LowSpeedError);
    expect(slow.code).toBe('TIMEOUT');
    expect(slow.message).toBe('transfer slower than 1000 bytes/s for 0.05 s (--speed-limit, --speed-time)');
  });
  it('does not count windows in which the caller paused the transfer', async () => {
    let calls = 0;
    const w = new SpeedWatch(limits, () => calls++);
    w.pause();
    await new Promise((r) => setTimeout(r, 180));
    w.stop();
    expect(calls).toBe(0);
  });
  it('is off with a speed limit of 0', async () => {
    let calls = 0;
    const w = new SpeedWatch({ ...limits, speedLimit: 0 }, () => calls++);
    await new Promise((r) => setTimeout(r, 120));
    w.stop();
    expect(calls).toBe(0);
  });
});

describe('Resolver limits on index graphs', () => {
  const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const IDX = 'application/vnd.oci.image.index.v1+json';
  const MAN = 'application/vnd.oci.image.manifest.v1+json';
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(Buffer.from('{}')), size: 2 };

  /** A registry answering each reference from `byRef` and claiming it hashes to what was asked (the lie). */
  function resolverOver(byRef: Record<string, Buffer>): { resolver: Resolver; asked: string[] } {
    const asked: string[] = [];
    const client = {
      async getManifest(_registry: string, _repository: string, reference: string): Promise<FetchedManifest> {
        asked.push(reference);
        const bytes = byRef[reference];
        if (!bytes) throw new Error(`no ${reference}`);
        const mediaType = JSON.parse(bytes.toString()).mediaType as string;
        return { digest: reference.startsWith('sha256:') ? reference : sha(bytes), mediaType, bytes };
      },
    } as unknown as RegistryClient;
    const cache = {
      getManifest: () => undefined,
      putManifest: async () => undefined,
      putTag: async () => undefined,
      getTag: () => undefined,
    } as unknown as Cache;
    return { resolver: new Resolver({ client, cache, platforms: 'all' }), asked };
  }
  const index = (digests: string[]) => Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: IDX, manifests: digests.map((digest) => ({ mediaType: IDX, digest, size: 100 })) }));
  const ref = (tag: string) => ({ input: tag, ref: parseReference(`127.0.0.1:1/x:${tag}`) });
  const A = `sha256:${'a'.repeat(64)}`;
  const B = `sha256:${'b'.repeat(64)}`;

  it('an index naming itself by digest, or an ancestor: a cycle, named', async () => {
    const { resolver, asked } = resolverOver({ v1: index([A]), [A]: index([B]), [B]: index([A]) });
    await expect(resolver.resolveOne(ref('v1'))).rejects.toThrow(/index cycle: sha256:[0-9a-f]{12}… → sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb… → sha256:aaaaaaaaaaaa…$/);
    expect(asked).toEqual(['v1', A, B]);
  });

  it(`indexes nested past ${MAX_INDEX_DEPTH}: refused before the next fetch`, async () => {
    const byRef: Record<string, Buffer> = {};
    const digests = Array.from({ length: 12 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);
    digests.forEach((d, i) => (byRef[d] = index(i + 1 < digests.length ? [digests[i + 1]!] : [])));
    byRef.v1 = index([digests[0]!]);
    const { resolver, asked } = resolverOver(byRef);
    await expect(resolver.resolveOne(ref('v1'))).rejects.toThrow(`indexes nested deeper than ${MAX_INDEX_DEPTH}`);
    expect(asked).toHaveLength(MAX_INDEX_DEPTH + 1);
  });

  it(`more than ${MAX_MANIFESTS_PER_INPUT} manifests under one reference: refused`, async () => {
    // 200 entries of an index whose 200 entries are one manifest: 40,200 to follow.
    const leaf = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MAN, config, layers: [] }));
    const L = sha(leaf);
    const { resolver } = resolverOver({ v1: index(Array(200).fill(A)), [A]: index(Array(200).fill(L)), [L]: leaf });
    await expect(resolver.resolveOne(ref('v1'))).rejects.toThrow(`more than ${MAX_MANIFESTS_PER_INPUT} manifests under one reference`);
  });
});
