// Random access to the files of a bundle, whether they sit in a directory or inside a tar.
// A tar is indexed once (header offsets only, nothing buffered), so a member can be streamed
// straight from the archive with a byte range — which push and serve need for large layers.
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { isUnsafePath, listInside, readRegular, regularSize, streamRegular } from '../fs/contained.js';
import { BundleError, READ_CHUNK_BYTES, type ReadOptions } from './types.js';

export interface FileStore {
  /** Where the files live, for messages. */
  readonly location: string;
  /** Size of a member, or undefined when it does not exist. */
  size(name: string): Promise<number | undefined>;
  read(name: string, maxBytes?: number): Promise<Buffer>;
  /** Bytes [start, end] (inclusive) of a member. */
  stream(name: string, start?: number, end?: number, opts?: ReadOptions): Readable;
  /** Member names under a directory prefix such as `blobs/sha256/` (regular files only). */
  list(prefix: string): Promise<string[]>;
  /** What under a prefix is not a regular file and is never read (links, FIFOs; the directory itself when it is a link): for verify to report. */
  strays(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * A bundle directory. Its files are untrusted (the bundle may come from anywhere): every member is
 * reached through src/fs/contained.ts, so a link (to /etc/shadow, or ../../) reads as absent and
 * never as its target's bytes.
 */
export class DirStore implements FileStore {
  constructor(readonly location: string) {}

  async size(name: string): Promise<number | undefined> {
    return regularSize(this.location, name);
  }

  async read(name: string, maxBytes = Infinity): Promise<Buffer> {
    try {
      return await readRegular(this.location, name, maxBytes);
    } catch (err) {
      if (isUnsafePath(err)) throw new BundleError(err.message);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BundleError(`${join(this.location, name)} does not exist`);
      throw err;
    }
  }

  stream(name: string, start = 0, end?: number, opts: ReadOptions = {}): Readable {
    // An empty blob or range is an empty stream.
    if (end !== undefined && end < start) return Readable.from([]);
    return streamRegular(this.location, name, start, end, opts.chunkBytes ?? READ_CHUNK_BYTES);
  }

  async list(prefix: string): Promise<string[]> {
    const dir = prefix.replace(/\/$/, '');
    try {
      return (await listInside(this.location, dir)).files.map((n) => `${dir}/${n}`);
    } catch (err) {
      if (isUnsafePath(err)) return [];
      throw err;
    }
  }

  async strays(prefix: string): Promise<string[]> {
    const dir = prefix.replace(/\/$/, '');
    try {
      return (await listInside(this.location, dir)).other.map((n) => `${dir}/${n}`);
    } catch (err) {
      if (isUnsafePath(err)) return [dir];
      throw err;
    }
  }

  async close(): Promise<void> {}
}

interface TarMember {
  offset: number;
  size: number;
}

const BLOCK = 512;

/** A tar archive read in place: ustar, pax (`x`) and GNU long names (`L`); links resolve to their targets. */
export class TarStore implements FileStore {
  private constructor(
    readonly location: string,
    private readonly members: Map<string, TarMember>,
  ) {}

  static async open(file: string): Promise<TarStore> {
    const fh = await open(file, 'r');
    try {
      return new TarStore(file, await indexTar(fh, file));
    } finally {
      await fh.close();
    }
  }

  async size(name: string): Promise<number | undefined> {
    return this.members.get(normalise(name))?.size;
  }

  async read(name: string, maxBytes = Infinity): Promise<Buffer> {
    const m = this.member(name);
    if (m.size > maxBytes) throw new BundleError(`${this.location}: ${name} is ${m.size} bytes, more than the ${maxBytes} allowed`);
    const fh = await open(this.location, 'r');
    try {
      const buf = Buffer.alloc(m.size);
      let done = 0;
      while (done < m.size) {
        const { bytesRead } = await fh.read(buf, done, m.size - done, m.offset + done);
        if (bytesRead === 0) throw new BundleError(`${this.location} is truncated inside ${name}`);
        done += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }

  stream(name: string, start = 0, end?: number, opts: ReadOptions = {}): Readable {
    const m = this.member(name);
    const last = Math.min(end ?? m.size - 1, m.size - 1);
    if (last < start) return Readable.from([]);
    return createReadStream(this.location, { start: m.offset + start, end: m.offset + last, highWaterMark: opts.chunkBytes ?? READ_CHUNK_BYTES });
  }

  async list(prefix: string): Promise<string[]> {
    const p = prefix.endsWith('/') ? prefix : `${prefix}/`;
    return [...this.members.keys()].filter((n) => n.startsWith(p) && !n.slice(p.length).includes('/'));
  }

  /** Tar links resolve to members inside the archive: nothing is ever read outside it. */
  async strays(): Promise<string[]> {
    return [];
  }

  private member(name: string): TarMember {
    const m = this.members.get(normalise(name));
    if (!m) throw new BundleError(`${this.location} has no member ${name}`);
    return m;
  }

  async close(): Promise<void> {}
}

function normalise(name: string): string {
  const n = posix.normalize(name.replace(/^(\.\/)+/, '').replace(/^\/+/, ''));
  return n === '.' ? '' : n.replace(/\/$/, '');
}

function cstring(buf: Buffer, start: number, len: number): string {
  const slice = buf.subarray(start, start + len);
  const nul = slice.indexOf(0);
  return slice.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function octal(buf: Buffer, start: number, len: number): number {
  // GNU base-256 for sizes beyond 8 GiB: high bit set, big-endian binary.
  if (buf[start]! & 0x80) {
    let n = buf[start]! & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + buf[start + i]!;
    return n;
  }
  const s = cstring(buf, start, len).trim();
  return s ? parseInt(s, 8) : 0;
}

/** Key/value records of a pax extended header: "LEN key=value\n". */
function paxRecords(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space < 0) break;
    const len = parseInt(data.subarray(pos, space).toString('ascii'), 10);
    if (!(len > 0)) break;
    const rec = data.subarray(space + 1, pos + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

/** Largest pax or GNU long-name header read (Go's archive/tar: maxSpecialFileSize, 1 MiB): each is held in memory. */
const MAX_SPECIAL_BYTES = 1 << 20;

/** A pax `size` record: decimal digits only, and a safe integer. */
function paxSize(value: string, file: string, at: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new BundleError(`${file}: the pax size "${value.slice(0, 40)}" for the entry at byte ${at} is not a byte count`);
  return n;
}

async function readAt(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

async function indexTar(fh: FileHandle, file: string): Promise<Map<string, TarMember>> {
  const total = (await fh.stat()).size;
  const first = await readAt(fh, 2, 0);
  if (first[0] === 0x1f && first[1] === 0x8b) {
    throw new BundleError(`${file} is gzip-compressed: decompress it first (gunzip), bundles are read in place`);
  }
  const members = new Map<string, TarMember>();
  const links: { name: string; target: string; symbolic: boolean }[] = [];
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  while (pos + BLOCK <= total) {
    const h = await readAt(fh, BLOCK, pos);
    if (h.every((b) => b === 0)) break;
    if (cstring(h, 257, 5) !== 'ustar' && octal(h, 148, 8) === 0) {
      throw new BundleError(`${file} is not a tar archive (bad header at byte ${pos})`);
    }
    let size = octal(h, 124, 12);
    const type = String.fromCharCode(h[156]!);
    const dataAt = pos + BLOCK;
    if (type === 'x' || type === 'L' || type === 'K') {
      if (size > MAX_SPECIAL_BYTES) throw new BundleError(`${file}: the extended header at byte ${pos} claims ${size} bytes (at most ${MAX_SPECIAL_BYTES})`);
      const data = await readAt(fh, size, dataAt);
      if (type === 'x') pax = paxRecords(data);
      else if (type === 'L') longName = cstring(data, 0, data.length);
      else longLink = cstring(data, 0, data.length);
      pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
      continue;
    }
    // A pax size replaces the header's (which is 0 or wrong beyond 8 GiB): it says where the next header is.
    if (type !== 'g' && pax.has('size')) size = paxSize(pax.get('size')!, file, pos);
    pos = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'g') continue;
    const prefix = cstring(h, 257, 6).startsWith('ustar') ? cstring(h, 345, 155) : '';
    let name = longName ?? pax.get('path') ?? (prefix ? `${prefix}/${cstring(h, 0, 100)}` : cstring(h, 0, 100));
    const linkname = longLink ?? pax.get('linkpath') ?? cstring(h, 157, 100);
    longName = longLink = undefined;
    pax = new Map();
    name = normalise(name);
    if (type === '0' || type === '\0' || type === '7') members.set(name, { offset: dataAt, size });
    else if (type === '1') links.push({ name, target: normalise(linkname), symbolic: false });
    else if (type === '2') links.push({ name, target: linkname, symbolic: true });
  }
  // Links (docker save's shared layer.tar symlinks, or hard links) point at a member's bytes.
  for (let round = 0; round < 8 && links.length; round++) {
    for (let i = links.length - 1; i >= 0; i--) {
      const l = links[i]!;
      const target = l.symbolic ? normalise(l.target.startsWith('/') ? l.target : posix.join(posix.dirname(l.name), l.target)) : l.target;
      const m = members.get(target);
      if (m) {
        members.set(l.name, m);
        links.splice(i, 1);
      }
    }
  }
  return members;
}
