// Tag and manifest records are committed in batches (issue 17: one LMDB commit each cost ~1 ms of
// CPU, 661 of them in a cold medium save), and so are blob records that finish close together.
// What must still hold: this process reads tags and manifests at once, another process reads any
// record once its put or commitBlob resolved, and nothing put is lost by close() or left behind by
// a blob commit of the same thread.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
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

  it('blobs finishing together share one commit, and each is complete for another process once its commitBlob resolved', async () => {
    const dir = join(work, 'e');
    const cache = Cache.open(dir);
    try {
      const commit = (text: string) => {
        const blob = Buffer.from(text);
        const file = cache.tempPath('blob');
        writeFileSync(file, blob);
        const digest = sha256Bytes(blob);
        return { digest, done: cache.commitBlob(digest, file, blob.length, 'application/octet-stream') };
      };
      await commit('the first blob').done;
      const before = lastTxnId(dir);
      const turn = () => new Promise((resolve) => setImmediate(resolve));
      // The commit's timer is this test's to move: no load on the machine can fire it early.
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      let five;
      try {
        const first = commit('one');
        // A write of an earlier turn would be on LMDB's write thread by now (lmdb-js starts one
        // commit per turn); these wait for one another instead.
        await turn();
        five = [first, ...['two', 'three', 'four', 'five'].map(commit)];
        await turn();
        expect(lastTxnId(dir)).toBe(before);
        vi.advanceTimersByTime(1_000);
      } finally {
        vi.useRealTimers();
      }
      await Promise.all(five.map((b) => b.done));
      expect(lastTxnId(dir) - before).toBe(1);
      expect(completeElsewhere(dir, five.map((b) => b.digest))).toEqual([true, true, true, true, true]);
    } finally {
      await cache.close();
    }
  });
});

/** The id of the index's last committed transaction, read by another process. */
function lastTxnId(dir: string): number {
  const script = `
    const { open } = await import('lmdb');
    const env = open({ path: process.argv[1], readOnly: true });
    process.stdout.write(String(env.getStats().lastTxnId));
    await env.close();`;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script, join(dir, 'index.lmdb')], { encoding: 'utf8', cwd: projectRoot() }));
}

/** Whether another process finds each blob complete in the cache. */
function completeElsewhere(dir: string, digests: string[]): boolean[] {
  const script = `
    const { Cache } = await import(${JSON.stringify(join(projectRoot(), 'dist', 'src', 'cache', 'cache.js'))});
    const c = Cache.open(process.argv[1]);
    process.stdout.write(JSON.stringify(process.argv.slice(2).map((d) => c.hasBlob(d))));
    await c.close();`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script, dir, ...digests], { encoding: 'utf8' })) as boolean[];
}
