// Tag and manifest records are committed in batches (issue 17: one LMDB commit each cost ~1 ms of
// CPU, 661 of them in a cold medium save). What must still hold: this process reads them at once,
// another process reads them once the put resolved, and nothing put is lost by close() or left
// behind by a blob commit of the same thread.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cache } from '../src/cache/cache.js';
import { sha256Bytes } from '../src/hash/hasher.js';
import { projectRoot } from './support/cli.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-cache-deferred-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** What another process finds in the cache's index: the tag's digest and whether the manifest is there. */
function readElsewhere(dir: string, tag: string, manifest: string): { tag?: string; manifest: boolean } {
  const script = `
    const { Cache } = await import(${JSON.stringify(join(projectRoot(), 'dist', 'src', 'cache', 'cache.js'))});
    const c = Cache.open(process.argv[1]);
    process.stdout.write(JSON.stringify({ tag: c.getTag(process.argv[2])?.digest, manifest: !!c.getManifest(process.argv[3]) }));
    await c.close();`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script, dir, tag, manifest], { encoding: 'utf8' })) as { tag?: string; manifest: boolean };
}

function manifestOf(n: number): { digest: string; bytes: Buffer } {
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, n }));
  return { digest: sha256Bytes(bytes), bytes };
}

describe('batched tag and manifest records', () => {
  it('are read at once by this process, and by another once the put resolved', async () => {
    const cache = Cache.open(join(work, 'a'));
    try {
      const m = manifestOf(1);
      const putM = cache.putManifest(m.digest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes: m.bytes });
      const putT = cache.putTag('r.invalid/x:1', { digest: m.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', resolvedAt: 1 });
      expect(cache.getTag('r.invalid/x:1')?.digest).toBe(m.digest);
      expect(cache.getManifest(m.digest)?.bytes.equals(m.bytes)).toBe(true);
      await Promise.all([putM, putT]);
      expect(readElsewhere(join(work, 'a'), 'r.invalid/x:1', m.digest)).toEqual({ tag: m.digest, manifest: true });
    } finally {
      await cache.close();
    }
  });

  it('still pending at close() are committed by it', async () => {
    const cache = Cache.open(join(work, 'b'));
    const m = manifestOf(2);
    const puts = [
      cache.putManifest(m.digest, { mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes: m.bytes }),
      cache.putTag('r.invalid/x:2', { digest: m.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', resolvedAt: 1 }),
    ];
    await cache.close();
    await Promise.all(puts);
    expect(readElsewhere(join(work, 'b'), 'r.invalid/x:2', m.digest)).toEqual({ tag: m.digest, manifest: true });
  });

  it('the later put of a tag wins, whichever commit carries it', async () => {
    const cache = Cache.open(join(work, 'c'));
    const [m1, m2] = [manifestOf(3), manifestOf(4)];
    const first = cache.putTag('r.invalid/x:3', { digest: m1.digest, mediaType: 'm', resolvedAt: 1 });
    await first;
    const second = cache.putTag('r.invalid/x:3', { digest: m2.digest, mediaType: 'm', resolvedAt: 2 });
    expect(cache.getTag('r.invalid/x:3')?.digest).toBe(m2.digest);
    await second;
    await cache.close();
    expect(readElsewhere(join(work, 'c'), 'r.invalid/x:3', m2.digest).tag).toBe(m2.digest);
  });

  it('a blob commit of the same thread carries the pending ones with it', async () => {
    const dir = join(work, 'd');
    const cache = Cache.open(dir);
    try {
      const m = manifestOf(5);
      const blob = Buffer.from('a small blob');
      const digest = sha256Bytes(blob);
      const tagPut = cache.putTag('r.invalid/x:5', { digest: m.digest, mediaType: 'm', resolvedAt: 1 });
      const file = cache.tempPath('blob');
      writeFileSync(file, blob);
      await cache.commitBlob(digest, file, blob.length, 'application/octet-stream');
      // Without the ride-along the tag would still wait for its timer (DEFER_MS, 20 ms), which cannot
      // fire while readElsewhere blocks this thread (execFileSync).
      expect(readElsewhere(dir, 'r.invalid/x:5', m.digest).tag).toBe(m.digest);
      await tagPut;
    } finally {
      await cache.close();
    }
  });
});
