// Issue 7, cache care: `ocisave cache ls|du|verify|prune` against caches filled by real saves
// from a real registry. Crash leftovers are made the way a killed download leaves them: a partial
// file longer than its checkpoint, a checkpoint without its file, a file without a checkpoint.
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Cache } from '../src/cache/cache.js';
import { parseDuration } from '../src/cache/duration.js';
import { ocisave, summaryOf } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import type { FixtureRef, FixtureSet } from './fixtures/model.js';

// Real registries and child processes: generous limits, whichever vitest config runs this file.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

const MiB = 1 << 20;
let source: RunningRegistry;
let fx: FixtureSet;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-cache-care-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 6 * MiB });
});

afterAll(async () => {
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

const ref = (pattern: RegExp): FixtureRef => fx.refs[fx.references.find((r) => pattern.test(r))!]!;
const blobsOf = (r: FixtureRef) => r.blobs;

async function saveInto(cache: string, r: FixtureRef, out = join(work, `out-${Math.random().toString(36).slice(2)}`)) {
  const res = await ocisave(['save', r.ref, '-o', out, '--cache', cache, '--json', '--platform', 'all']);
  expect(res.code, res.stderr).toBe(0);
  return summaryOf(res);
}

async function cacheJson(cache: string, ...args: string[]) {
  const r = await ocisave(['cache', ...args, '--cache', cache, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('ocisave cache', () => {
  it('reads durations as 30d, 12h, 1h30m', () => {
    expect(parseDuration('30d')).toBe(30 * 86_400_000);
    expect(parseDuration('12h')).toBe(12 * 3_600_000);
    expect(parseDuration('1h30m')).toBe(90 * 60_000);
    expect(parseDuration('2w')).toBe(14 * 86_400_000);
    expect(parseDuration('1500ms')).toBe(1500);
    for (const bad of ['', '30', 'd', '3x', '1h 30m', '-1d']) expect(() => parseDuration(bad), bad).toThrow(/not a duration/);
  });

  it('ls lists blobs with size, media type and last use; du adds them up', async () => {
    const cache = join(work, 'c-ls');
    const web = ref(/\/app\/web:1\.0$/);
    await saveInto(cache, web);
    const ls = await cacheJson(cache, 'ls');
    expect(ls.blobs.map((b: { digest: string }) => b.digest).sort()).toEqual(blobsOf(web));
    for (const b of ls.blobs) {
      expect(b.size).toBe(fx.blobs[b.digest]!.size);
      expect(fx.blobs[b.digest]!.mediaTypes).toContain(b.mediaType);
      expect(b.lastUsedAt).toBeGreaterThan(Date.now() - 60_000);
      expect(b.present).toBe(true);
    }
    expect(ls.partials).toEqual([]);
    const du = await cacheJson(cache, 'du');
    expect(du.blobs).toEqual({ count: web.blobs.length, bytes: web.blobBytes });
    expect(du.totalBytes).toBeGreaterThanOrEqual(web.blobBytes);
  });

  it('verify drops a corrupt blob (the next save fetches it again) and re-indexes a correct file that lost its record', async () => {
    const cache = join(work, 'c-verify');
    const tool = ref(/\/nested\/deep\/repo\/tool:v2$/);
    await saveInto(cache, tool);
    const victim = tool.layers![tool.layers!.length - 1]!;
    const path = join(cache, 'blobs/sha256', victim.slice(7));
    const bytes = await readFile(path);
    await rm(path); // the saved bundle hard-links this inode: leave its copy alone
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x55;
    await writeFile(path, bytes);

    const r = await cacheJson(cache, 'verify');
    expect(r.corrupt).toEqual([victim]);
    expect(r.checked).toBe(tool.blobs.length);
    const ls = await cacheJson(cache, 'ls');
    expect(ls.blobs.map((b: { digest: string }) => b.digest)).not.toContain(victim);
    const again = await saveInto(cache, tool);
    expect(again.downloaded.blobs).toBe(1);
    expect((await cacheJson(cache, 'verify')).corrupt).toEqual([]);

    // A crash between the rename into blobs/ and the index write leaves a correct, unindexed file.
    const other = join(work, 'c-orphan');
    const c = Cache.open(other);
    await c.close();
    await copyFile(join(cache, 'blobs/sha256', victim.slice(7)), join(other, 'blobs/sha256', victim.slice(7)));
    await writeFile(join(other, 'blobs/sha256', 'f'.repeat(64)), 'not what its name says');
    const v = await cacheJson(other, 'verify');
    expect(v.adopted).toEqual([victim]);
    expect(v.removedFiles).toEqual(['f'.repeat(64)]);
    const s = await saveInto(other, tool);
    expect(s.reused.blobs).toBe(1);
  });

  it('verify repairs partial downloads left by a crash, and the next save resumes from the checkpoint', async () => {
    const cache = join(work, 'c-partial');
    const big = ref(/\/big\/blob:latest$/);
    const layer = big.layers![0]!;
    // The first 4 MiB of the real blob, as a killed download leaves them: checkpointed at 3 MiB,
    // with 1 MiB written after the checkpoint.
    const res = await request(`${source.url}/v2/big/blob/blobs/${layer}`, { headers: { range: `bytes=0-${4 * MiB - 1}` } });
    const head = Buffer.from(await res.body.arrayBuffer());
    expect(head.length).toBe(4 * MiB);
    const stray = `sha256:${'e'.repeat(64)}`;
    const ghost = `sha256:${'d'.repeat(64)}`;
    const c = Cache.open(cache);
    try {
      await writeFile(c.partialPath(layer), head);
      await c.savePartial(layer, { offset: 3 * MiB, hasher: 'node', updatedAt: Date.now() });
      await c.savePartial(ghost, { offset: 1000, hasher: 'node', updatedAt: Date.now() }); // its file is gone
      await writeFile(c.partialPath(stray), Buffer.alloc(5000, 1)); // no checkpoint at all
    } finally {
      await c.close();
    }
    const ls = await cacheJson(cache, 'ls');
    expect(ls.partials).toEqual(
      expect.arrayContaining([expect.objectContaining({ digest: layer, offset: 3 * MiB, fileBytes: 4 * MiB }), expect.objectContaining({ digest: ghost })]),
    );

    const r = await cacheJson(cache, 'verify');
    expect(r.partials.truncated).toEqual([{ digest: layer, from: 4 * MiB, to: 3 * MiB }]);
    expect(r.partials.dropped).toEqual([expect.objectContaining({ digest: ghost })]);
    expect(r.partials.removedFiles).toEqual([stray]);
    const after = await cacheJson(cache, 'ls');
    expect(after.partials).toEqual([expect.objectContaining({ digest: layer, offset: 3 * MiB, fileBytes: 3 * MiB })]);

    const s = await saveInto(cache, big);
    expect(s.resumedBytes).toBe(3 * MiB);
    expect((await cacheJson(cache, 'ls')).partials).toEqual([]);
    expect((await cacheJson(cache, 'verify')).corrupt).toEqual([]);
  });

  it('prune removes blobs unused for a duration, never one a live download holds', async () => {
    const cache = join(work, 'c-prune');
    const oldImage = ref(/\/test\/whiteouts:latest$/);
    const newImage = ref(/\/nested\/deep\/repo\/tool:v2$/);
    expect(oldImage.blobs.filter((d) => newImage.blobs.includes(d))).toEqual([]);
    await saveInto(cache, oldImage);
    await saveInto(cache, newImage);
    // The first image was last used two hours ago, the second now: --older-than 1h splits them
    // whatever the machine's load makes of the time between the two saves.
    const backdate = Cache.open(cache);
    try {
      await backdate.touch(oldImage.blobs, Date.now() - 2 * 3600_000);
    } finally {
      await backdate.close();
    }
    const olderThan = () => '1h';

    const dry = await cacheJson(cache, 'prune', '--older-than', olderThan(), '--dry-run');
    expect(dry.removed.map((b: { digest: string }) => b.digest).sort()).toEqual(oldImage.blobs);
    expect((await cacheJson(cache, 'ls')).blobs).toHaveLength(oldImage.blobs.length + newImage.blobs.length);

    // A download in this (live) process holds one of the old blobs.
    const held = oldImage.blobs[0]!;
    const c = Cache.open(cache);
    try {
      expect(c.tryLock(held, 'test-live-download')).toBe(true);
      const r = await cacheJson(cache, 'prune', '--older-than', olderThan());
      expect(r.locked).toEqual([held]);
      expect(r.removed.map((b: { digest: string }) => b.digest).sort()).toEqual(oldImage.blobs.filter((d) => d !== held));
      expect(r.removedBytes).toBe(oldImage.blobBytes - fx.blobs[held]!.size);
      const left = (await cacheJson(cache, 'ls')).blobs.map((b: { digest: string }) => b.digest).sort();
      expect(left).toEqual([held, ...newImage.blobs].sort());
      c.unlock(held, 'test-live-download');
    } finally {
      await c.close();
    }
    const r2 = await cacheJson(cache, 'prune', '--older-than', olderThan());
    expect(r2.removed.map((b: { digest: string }) => b.digest)).toEqual([held]);
    expect((await cacheJson(cache, 'du')).blobs).toEqual({ count: newImage.blobs.length, bytes: newImage.blobBytes });

    const bad = await ocisave(['cache', 'prune', '--older-than', 'soon', '--cache', cache]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/not a duration/);
  });
});
