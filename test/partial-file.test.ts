// A download's partial file is a raw descriptor (its metadata calls are synchronous, issue 17): it
// must close once however many error paths close it (a second close would close whatever file got
// the same number since), refuse a link planted in partial/, and write where it is told.
import { closeSync, fstatSync, lstatSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cache, CacheIntegrityError } from '../src/cache/cache.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
let work: string;
let cache: Cache;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-partial-file-'));
  cache = Cache.open(join(work, 'cache'));
});

afterAll(async () => {
  await cache?.close();
  await rm(work, { recursive: true, force: true });
});

describe('partial files', () => {
  it('a second close leaves alone the file that took the same descriptor number', async () => {
    const partial = await cache.openPartial(DIGEST, 'w');
    await partial.close();
    const other = openSync(join(work, 'other'), 'w');
    try {
      expect(other).toBe(partial.fd); // the kernel hands out the lowest free number
      await partial.close();
      expect(fstatSync(other).isFile()).toBe(true); // still open: EBADF had it been closed
    } finally {
      closeSync(other);
    }
  });

  it('writes at the positions given, truncates, and continues with r+', async () => {
    const w = await cache.openPartial(DIGEST, 'w');
    await w.writev([Buffer.from('hello '), Buffer.from('world')], 0);
    await w.truncate(5);
    await w.close();
    const r = await cache.openPartial(DIGEST, 'r+');
    await r.writev([Buffer.from('!')], 5);
    await r.close();
    expect(readFileSync(cache.partialPath(DIGEST), 'utf8')).toBe('hello!');
  });

  it("'w' replaces a link planted in partial/ and never writes through it", async () => {
    const target = join(work, 'target');
    writeFileSync(target, 'keep');
    await rm(cache.partialPath(DIGEST), { force: true });
    symlinkSync(target, cache.partialPath(DIGEST));
    const w = await cache.openPartial(DIGEST, 'w');
    await w.writev([Buffer.from('new')], 0);
    await w.close();
    expect(lstatSync(cache.partialPath(DIGEST)).isFile()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('keep');
  });

  it("'r+' removes a link planted in partial/ and finds nothing to continue", async () => {
    const target = join(work, 'target2');
    writeFileSync(target, 'keep');
    await rm(cache.partialPath(DIGEST), { force: true });
    symlinkSync(target, cache.partialPath(DIGEST));
    await expect(cache.openPartial(DIGEST, 'r+')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(() => lstatSync(cache.partialPath(DIGEST))).toThrow(/ENOENT/);
    expect(readFileSync(target, 'utf8')).toBe('keep');
  });

  it('blobIdentity refuses a blob that is not in the index', () => {
    expect(() => cache.blobIdentity(`sha256:${'cd'.repeat(32)}`)).toThrow(CacheIntegrityError);
  });
});
