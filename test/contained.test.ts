// Unit tests of the one way bundle and cache files are opened (src/fs/contained.ts), and of the
// hash that follows a push's uploads (src/push/upload-hash.ts): the hostile cases first.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashRegular, listInside, lstatInside, openRegular, readRegular, regularSize, removeInside, streamRegular, UnsafePathError } from '../src/fs/contained.js';
import { CorruptBlobError, UploadHash } from '../src/push/upload-hash.js';

let work: string;
let root: string;
const SECRET = 'outside-the-root secret bytes';

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-contained-'));
  root = join(work, 'root');
  await mkdir(join(root, 'dir/sub'), { recursive: true });
  await mkdir(join(work, 'elsewhere'));
  await writeFile(join(work, 'secret'), SECRET);
  await writeFile(join(work, 'elsewhere', 'file'), SECRET);
  await writeFile(join(root, 'dir/sub/file'), '0123456789');
  await symlink(join(work, 'secret'), join(root, 'dir/abs-link'));
  await symlink('../../secret', join(root, 'dir/rel-link'));
  await symlink(join(work, 'elsewhere'), join(root, 'linked-dir'));
  execFileSync('mkfifo', [join(root, 'fifo')]);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function unsafe(p: Promise<unknown>): Promise<UnsafePathError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnsafePathError);
  return err as UnsafePathError;
}

describe('contained files', () => {
  it('reads a regular file, whole, bounded, or as a byte range', async () => {
    expect((await readRegular(root, 'dir/sub/file', 100)).toString()).toBe('0123456789');
    expect((await unsafe(readRegular(root, 'dir/sub/file', 5))).kind).toBe('too-large');
    const chunks: Buffer[] = [];
    for await (const c of streamRegular(root, 'dir/sub/file', 2, 5)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('2345');
    expect(await regularSize(root, 'dir/sub/file')).toBe(10);
    expect((await hashRegular(root, 'dir/sub/file')).digest).toBe(`sha256:${createHash('sha256').update('0123456789').digest('hex')}`);
  });

  it('never follows a link as the last component, absolute or relative', async () => {
    for (const name of ['dir/abs-link', 'dir/rel-link']) {
      expect((await unsafe(openRegular(root, name))).kind, name).toBe('symlink');
      expect(await regularSize(root, name), name).toBeUndefined();
      expect((await lstatInside(root, name))?.isSymbolicLink(), name).toBe(true);
    }
  });

  it('never goes through a linked directory, and refuses names that leave the root', async () => {
    expect((await unsafe(openRegular(root, 'linked-dir/file'))).kind).toBe('symlink');
    expect((await unsafe(listInside(root, 'linked-dir'))).kind).toBe('symlink');
    for (const name of ['../secret', 'dir/../../secret', '/etc/passwd', 'dir//sub/file', './dir/sub/file']) {
      expect((await unsafe(openRegular(root, name))).kind, name).toBe('outside');
    }
  });

  it('does not block on a FIFO and refuses it as not a regular file', async () => {
    expect((await unsafe(openRegular(root, 'fifo'))).kind).toBe('not-regular');
  });

  it('lists entries by type without following any, and removes a link itself, never its target', async () => {
    const l = await listInside(root, 'dir');
    expect(l.dirs).toEqual(['sub']);
    expect(l.other.sort()).toEqual(['abs-link', 'rel-link']);
    expect(await removeInside(root, 'dir/abs-link')).toBe(true);
    expect(await readFile(join(work, 'secret'), 'utf8')).toBe(SECRET);
    expect((await unsafe(removeInside(root, 'linked-dir/file'))).kind).toBe('symlink');
    expect(await readFile(join(work, 'elsewhere', 'file'), 'utf8')).toBe(SECRET);
    expect((await stat(join(work, 'elsewhere', 'file'))).isFile()).toBe(true);
  });
});

describe('the hash of what a push sends', () => {
  const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const read = (start: number, end: number) => Readable.from([data.subarray(start, end + 1)]);
  const drain = async (r: Readable) => {
    for await (const _ of r) void _;
  };

  it('follows chunks, a registry that kept less than was sent, and one that lost a whole chunk', async () => {
    const h = new UploadHash(digest, read);
    await drain(h.tap(0, read(0, 3999)));
    await h.syncTo(4000);
    await drain(h.tap(4000, read(4000, 7999)));
    await h.syncTo(5000); // kept only part of the chunk: back to the chunk's start, then forward from the file
    await drain(h.tap(5000, read(5000, 9999)));
    await h.syncTo(2000); // lost more than the last chunk: from byte 0
    await h.check(10_000);
  });

  it('refuses bytes that do not hash to the digest, or a file that ends early', async () => {
    const bad = Buffer.from(data);
    bad[6000] = bad[6000]! ^ 0xff;
    const h = new UploadHash(digest, (s, e) => Readable.from([bad.subarray(s, e + 1)]));
    await drain(h.tap(0, Readable.from([bad])));
    await expect(h.check(10_000)).rejects.toThrow(CorruptBlobError);
    const short = new UploadHash(digest, (s, e) => Readable.from([data.subarray(s, Math.min(e + 1, 9000))]));
    await expect(short.check(10_000)).rejects.toThrow(/ends at byte 9000/);
  });
});
