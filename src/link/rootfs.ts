// Unpack an image's layers, in order, into a root filesystem directory, applying overlay
// whiteouts as image-spec layer.md describes. The reference for the resulting tree is
// `umoci unpack --rootless`: no chown, device nodes become empty regular files (with a note),
// FIFOs are created, modes and mtimes are kept, directory metadata is applied last.
//
// Security: every path is resolved inside the root. `..` that would climb above the root is
// refused, absolute names are taken relative to the root, symlinks met in parent components
// are resolved as if the root were `/` (so `a -> /etc` then `a/passwd` writes ROOT/etc/passwd,
// never the host's), the last component is never followed (existing entries are unlinked and
// files are created O_EXCL|O_NOFOLLOW), and hard-link targets must exist inside the root.
// On top of that, every write and every removal passes one guard (`Unpacker.guard`) that proves
// the path lies strictly inside the staging root, lexically and by the real path of its parent.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { chmod, link, lstat, lutimes, mkdir, open, readdir, readlink, realpath, rm, symlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import tar from 'tar-stream';
import type { LinkBlobs } from './blobs.js';
import { sha256Hasher } from '../hash/hasher.js';
// A tar name can be as long as a PAX record: quoted printable and cut short in messages.
import { formatReference, quoteInput } from '../ref/reference.js';
import { blobsOf, type ManifestNode, type ResolvedImage } from '../resolve/graph.js';
import { isImageConfigType } from '../util/mediatypes.js';
import { selectSingleManifest } from './docker-archive.js';
import { openSource, writeAtomically, type FileSource } from './files.js';
import { inputError, InvalidInputError, OcisaveError } from '../util/errors.js';

const run = promisify(execFile);

type TarEntry = tar.Extract extends AsyncIterable<infer S> ? S : never;

export type Compression = 'gzip' | 'zstd' | 'none';

/** An image config is read whole: far more than any real one (a few KiB; long histories, tens). */
export const MAX_CONFIG_BYTES = 64 << 20;

/** Layer compression from the first bytes of the blob: media types are sometimes wrong. */
export async function detectCompression(fh: FileHandle): Promise<Compression> {
  const { buffer, bytesRead } = await fh.read(Buffer.alloc(4), 0, 4, 0);
  if (bytesRead >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'gzip';
  if (bytesRead === 4 && buffer.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/**
 * The uncompressed tar stream of a layer blob, with its sha256 and length computed as it flows
 * (read `digest()` / `size()` once the stream has ended).
 */
export async function openLayerTar(source: FileSource, what: string): Promise<{ stream: Readable; compression: Compression; digest: () => string; size: () => number }> {
  // One checked descriptor for the sniff and the stream (a cache blob: the recorded file, no link).
  const { fh } = await openSource(source);
  let compression: Compression;
  try {
    compression = await detectCompression(fh);
  } catch (err) {
    await fh.close();
    throw err;
  }
  const file = fh.createReadStream({ start: 0, highWaterMark: 1 << 20 });
  let decoded: Readable = file;
  if (compression === 'gzip') {
    decoded = file.pipe(zlib.createGunzip());
    file.on('error', (e) => decoded.destroy(e));
  } else if (compression === 'zstd') {
    // zlib gained zstd in Node 22.15; on older runtimes say so instead of failing obscurely.
    const make = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress;
    if (!make) {
      file.destroy();
      throw new OcisaveError('UNSUPPORTED', `${what} is zstd-compressed, and this Node.js (${process.version}) cannot decompress zstd: use Node.js 22.15 or later`);
    }
    decoded = file.pipe(make());
    file.on('error', (e) => decoded.destroy(e));
  }
  const hash = sha256Hasher();
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  decoded.on('error', (e) => tap.destroy(e));
  let digest: string | undefined;
  return {
    stream: decoded.pipe(tap),
    compression,
    digest: () => (digest ??= hash.digest()),
    size: () => size,
  };
}

export interface RootfsOptions {
  image: ResolvedImage;
  cache: LinkBlobs;
  /** The directory to create; it must not exist, or be empty, unless `replace` is set. */
  out: string;
  /** Replace an existing non-empty directory at `out` (only once the new tree is complete). */
  replace?: boolean;
  onWarning?: (message: string) => void;
}

export interface RootfsResult {
  path: string;
  manifest: string;
  layers: number;
  warnings: string[];
}

export interface LayerInput {
  digest: string;
  source: FileSource;
  /** When known (the image config's rootfs.diff_ids[i]): the uncompressed tar must hash to it. */
  diffId?: string;
}

/** Unpack the one image (one platform) `opts.image` names into `opts.out`. */
export async function unpackImage(opts: RootfsOptions): Promise<RootfsResult> {
  const { image, cache } = opts;
  const name = `${image.input} (${formatReference(image.ref)})`;
  const m: ManifestNode = selectSingleManifest(image, 'root filesystem');
  if (!isImageConfigType(m.config.mediaType)) {
    throw new InvalidInputError(`${name} is not a container image (config media type ${m.config.mediaType}); it has no root filesystem to unpack`);
  }
  for (const d of blobsOf(m)) {
    if (!cache.hasBlob(d.digest)) throw new OcisaveError('NOT_FOUND', `${name}: blob ${d.digest} is not in the cache at ${cache.dir}; fetch the image first`);
  }
  const config = JSON.parse((await cache.readBlob(m.config.digest, MAX_CONFIG_BYTES)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== m.layers.length) {
    throw new InvalidInputError(`${name}: manifest ${m.digest} has ${m.layers.length} layers but its config lists ${diffIds.length} rootfs.diff_ids`);
  }
  const layers = m.layers.map((l, i) => ({ digest: l.digest, source: cache.blobSource(l.digest), diffId: diffIds[i] }));
  const warnings = await unpackLayers(layers, opts.out, { replace: opts.replace, onWarning: opts.onWarning });
  return { path: opts.out, manifest: m.digest, layers: layers.length, warnings };
}

/** Apply `layers` in order into a fresh tree at `out`, built under a staging name and renamed into place. */
export async function unpackLayers(
  layers: LayerInput[],
  out: string,
  opts: { replace?: boolean; onWarning?: (message: string) => void } = {},
): Promise<string[]> {
  await refuseNonEmpty(out, !!opts.replace);
  return writeAtomically(out, async (staging) => {
    await mkdir(staging, { mode: 0o755 });
    const unpacker = new Unpacker(staging, await realpath(staging), opts.onWarning);
    for (const layer of layers) await unpacker.apply(layer);
    await unpacker.finish();
    return unpacker.warnings;
  });
}

async function refuseNonEmpty(out: string, replace: boolean): Promise<void> {
  let st: Stats;
  try {
    st = await lstat(out);
  } catch {
    return;
  }
  if (!st.isDirectory()) throw new InvalidInputError(`${out} exists and is not a directory`);
  if (!replace && (await readdir(out)).length > 0) {
    throw new InvalidInputError(`${out} exists and is not empty: remove it or choose another directory (or pass --force to replace it)`);
  }
}

export class LayerError extends InvalidInputError {
  constructor(layer: string, entry: string, reason: string) {
    super(`layer ${layer}: entry "${quoteInput(entry)}": ${reason}`);
    this.name = 'LayerError';
  }
}

interface DirMeta {
  mode: number;
  /** Undefined once a later layer changed the directory without an entry of its own (umoci leaves that mtime as is). */
  mtime?: Date;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * The entry a whiteout `.wh.NAME` hides, or null when NAME names no entry: empty (`.wh.`), `.`
 * (`.wh..`) or `..` (`.wh...`). containerd's applier (pkg/archive/tar.go, validateWhiteout) fails
 * the whole layer with "invalid whiteout name" for all three; umoci (oci/layer/tar_extract.go)
 * refuses only the empty name and acts on `.` and `..`. We follow containerd, the stricter one.
 */
export function whiteoutTarget(base: string): string | null {
  const name = base.slice(WH.length);
  return name === '' || name === '.' || name === '..' ? null : name;
}

/**
 * Whether `path` lies strictly inside `root`, once both are resolved: compared with a trailing
 * separator (so ROOT2 is not inside ROOT), and ROOT itself is not inside.
 */
export function strictlyInside(root: string, path: string): boolean {
  return resolve(path).startsWith(resolve(root) + sep);
}

/** Lexically normalised components of a tar name; null when `..` climbs above the root. */
export function entryComponents(name: string): string[] | null {
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(c);
  }
  return out;
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

class Unpacker {
  readonly warnings: string[] = [];
  /** Directory modes and mtimes, applied after the last layer (children change a dir's mtime). */
  private readonly dirMeta = new Map<string, DirMeta>();
  /** Paths (resolved, relative) created by the layer being applied, and their ancestors. */
  private upper = new Set<string>();
  /** Paths verified to be real directories (no symlink on the way); forgotten whenever anything is removed. */
  private readonly knownDirs = new Set<string>();
  private layer = '';
  private entry = '';

  constructor(
    private readonly root: string,
    /** realpath(root): the parent of anything written must resolve to it or below it. */
    private readonly realRoot: string,
    private readonly onWarning?: (message: string) => void,
  ) {}

  /**
   * The one guard every write and removal passes: `p` must lie strictly inside the root (the root
   * itself is not inside: only its own metadata may be set, in finish()), lexically and by the
   * real path of its parent directory, so no `..`, absolute name or symlink can take it out.
   */
  private async guard(p: string, allowRoot = false): Promise<string> {
    const abs = resolve(p);
    const isRoot = abs === resolve(this.root);
    const parent = isRoot ? this.realRoot : await realpath(dirname(abs));
    if (!((allowRoot && isRoot) || strictlyInside(this.root, abs)) || !(parent === this.realRoot || strictlyInside(this.realRoot, parent))) {
      this.fail(`would write or remove ${quoteInput(abs)}, which is not inside the root filesystem being built; refusing this layer`);
    }
    return abs;
  }

  private fail(reason: string): never {
    throw new LayerError(this.layer, this.entry, reason);
  }

  private warn(reason: string): void {
    const msg = `layer ${this.layer}: entry "${quoteInput(this.entry)}": ${reason}`;
    this.warnings.push(msg);
    this.onWarning?.(msg);
  }

  private abs(rel: string[]): string {
    return join(this.root, ...rel);
  }

  private markUpper(rel: string[]): void {
    for (let i = 1; i <= rel.length; i++) this.upper.add(rel.slice(0, i).join('/'));
  }

  /** Every removal goes through here: it may turn a known directory into nothing (or, later, a symlink). */
  private async remove(p: string): Promise<void> {
    this.knownDirs.clear();
    await rm(await this.guard(p), { recursive: true, force: true });
  }

  private async mkdir(p: string): Promise<void> {
    await mkdir(await this.guard(p), { mode: 0o755 });
  }

  private forget(rel: string): void {
    for (const k of this.dirMeta.keys()) if (k === rel || k.startsWith(`${rel}/`)) this.dirMeta.delete(k);
  }

  /**
   * Resolve directory components inside the root: symlinks are followed as if the root were `/`
   * (never leaving it), `..` stops at the root. With `create`, missing directories are made and
   * non-directories in the way are replaced; without it, null when the path does not exist.
   */
  private async resolveDir(comps: string[], create: boolean): Promise<string[] | null> {
    if (comps.length === 0 || this.knownDirs.has(comps.join('/'))) return comps;
    const out: string[] = [];
    const queue = [...comps];
    let links = 0;
    while (queue.length) {
      const c = queue.shift()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        out.pop();
        continue;
      }
      const p = this.abs([...out, c]);
      const st = await lstatOrNull(p);
      if (st?.isSymbolicLink()) {
        if (++links > 255) this.fail('too many levels of symbolic links in its parent directories');
        const target = await readlink(p);
        if (target.startsWith('/')) out.length = 0;
        queue.unshift(...target.split('/'));
        continue;
      }
      if (st?.isDirectory()) {
        out.push(c);
        this.knownDirs.add(out.join('/'));
        continue;
      }
      if (!create) return null;
      if (st) await this.remove(p);
      await this.mkdir(p);
      // An implicit directory changes its parent without a header to restore the mtime from.
      const parentMeta = this.dirMeta.get(out.join('/'));
      if (parentMeta) parentMeta.mtime = undefined;
      out.push(c);
      this.markUpper(out);
      this.knownDirs.add(out.join('/'));
    }
    return out;
  }

  async apply(layer: LayerInput): Promise<void> {
    this.layer = layer.digest;
    this.entry = '';
    this.upper = new Set();
    const src = await openLayerTar(layer.source, `layer ${layer.digest}`);
    const extract = tar.extract();
    const feeding = pipeline(src.stream, extract);
    feeding.catch(() => {}); // surfaced by the iteration below or awaited at the end
    try {
      for await (const entry of extract) {
        this.entry = entry.header.name;
        await this.applyEntry(entry);
        entry.resume(); // drain whatever an entry type did not read
      }
      await feeding;
    } catch (err) {
      extract.destroy();
      src.stream.destroy();
      if (err instanceof LayerError) throw err;
      throw inputError(`layer ${layer.digest}: ${(err as Error).message}`, err);
    }
    if (layer.diffId && src.digest() !== layer.diffId) {
      throw new InvalidInputError(`layer ${layer.digest} decompresses to ${src.digest()}, but the image config's rootfs.diff_ids says ${layer.diffId}: the image is inconsistent`);
    }
  }

  private async applyEntry(entry: TarEntry): Promise<void> {
    const h = entry.header;
    const comps = entryComponents(h.name);
    if (!comps) this.fail('path escapes the root filesystem (".." above /); refusing this layer');
    const mtime = mtimeOf(h);
    const mode = (h.mode ?? 0o644) & 0o7777;

    if (comps.length === 0) {
      if (h.type === 'directory') this.dirMeta.set('', { mode, mtime });
      return;
    }
    const base = comps[comps.length - 1]!;

    if (base.startsWith(WH)) {
      const meta = base.startsWith(`${WH}${WH}`); // .wh..wh..opq, or other aufs metadata (.wh..wh.plnk, ...)
      const target = meta ? undefined : whiteoutTarget(base);
      if (target === null) this.fail(`whiteout "${quoteInput(base)}" names no entry (its target would be "${base.slice(WH.length)}"); refusing this layer, as containerd does`);
      const parent = await this.resolveDir(comps.slice(0, -1), false);
      if (!parent) return; // nothing below to hide
      if (base === OPAQUE) return this.opaque(parent);
      if (target === undefined) return; // aufs metadata other than the opaque marker: not content
      const victim = [...parent, target];
      const rel = victim.join('/');
      // A whiteout hides lower layers only, never what this same layer created.
      if (this.upper.has(rel)) return;
      await this.remove(this.abs(victim));
      this.forget(rel);
      return;
    }

    const parent = await this.resolveDir(comps.slice(0, -1), true);
    const rel = [...parent!, base];
    const p = this.abs(rel);
    const existing = await lstatOrNull(p);
    this.markUpper(rel);

    switch (h.type) {
      case 'directory':
        if (!existing?.isDirectory()) {
          if (existing) await this.remove(p);
          await this.mkdir(p);
        }
        this.dirMeta.set(rel.join('/'), { mode, mtime });
        return;
      case 'file':
      case 'contiguous-file':
        await this.clear(p, existing, rel);
        await writeFileFrom(entry, await this.guard(p), mode, mtime);
        return;
      case 'symlink':
        await this.clear(p, existing, rel);
        await symlink(h.linkname ?? '', await this.guard(p));
        await lutimes(p, mtime, mtime);
        return;
      case 'link':
        return this.hardLink(h.linkname ?? '', p, existing, rel);
      case 'character-device':
      case 'block-device':
        // Creating device nodes needs privileges we do not assume; rootless umoci writes an empty file.
        this.warn(`device ${h.devmajor ?? 0}:${h.devminor ?? 0} written as an empty file (device nodes are not created)`);
        await this.clear(p, existing, rel);
        await writeFileFrom(null, await this.guard(p), mode, mtime);
        return;
      case 'fifo':
        await this.clear(p, existing, rel);
        // Node has no mkfifo(3); coreutils' mkfifo -m sets the mode exactly (no umask).
        await run('mkfifo', ['-m', mode.toString(8), '--', await this.guard(p)]);
        await lutimes(p, mtime, mtime);
        return;
      default:
        this.warn(`entry type ${String(h.type)} is not supported; skipped`);
    }
  }

  /** Remove whatever is at `p` (never following a symlink) so a new entry can take its place. */
  private async clear(p: string, existing: Stats | null, rel: string[]): Promise<void> {
    if (!existing) return;
    await this.remove(p);
    if (existing.isDirectory()) this.forget(rel.join('/'));
  }

  private async hardLink(linkname: string, p: string, existing: Stats | null, rel: string[]): Promise<void> {
    const tcomps = entryComponents(linkname);
    if (!tcomps || tcomps.length === 0) this.fail(`hard link target "${linkname}" escapes the root filesystem; refusing this layer`);
    const tparent = await this.resolveDir(tcomps.slice(0, -1), false);
    const target = tparent ? this.abs([...tparent, tcomps[tcomps.length - 1]!]) : null;
    const tst = target ? await lstatOrNull(target) : null;
    if (!target || !tst) this.fail(`hard link target "${linkname}" does not exist in the root filesystem`);
    if (tst.isDirectory()) this.fail(`hard link target "${linkname}" is a directory`);
    if (existing && existing.ino === tst.ino && existing.dev === tst.dev) return;
    await this.clear(p, existing, rel);
    await link(await this.guard(target), await this.guard(p)); // link(2) does not follow a symlink target on Linux
  }

  /** `.wh..wh..opq`: hide everything lower layers put below `dir`, keep what this layer put there. */
  private async opaque(dir: string[]): Promise<void> {
    const walk = async (d: string[]): Promise<void> => {
      for (const name of await readdir(this.abs(d))) {
        const child = [...d, name];
        const rel = child.join('/');
        if (this.upper.has(rel)) {
          const st = await lstat(this.abs(child));
          if (st.isDirectory()) await walk(child);
        } else {
          await this.remove(this.abs(child));
          this.forget(rel);
        }
      }
    };
    await walk(dir);
  }

  /** Directory modes and mtimes, deepest first, once nothing more is written into them. */
  async finish(): Promise<void> {
    const dirs = [...this.dirMeta.entries()].sort((a, b) => depth(b[0]) - depth(a[0]));
    for (const [rel, meta] of dirs) {
      const p = await this.guard(rel ? join(this.root, rel) : this.root, true);
      const st = await lstatOrNull(p);
      if (!st?.isDirectory()) continue;
      await chmod(p, meta.mode);
      if (meta.mtime) await lutimes(p, meta.mtime, meta.mtime);
    }
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}

/** PAX mtime when present (sub-second), else the ustar seconds. */
function mtimeOf(h: tar.Header): Date {
  const pax = h.pax as Record<string, string> | null | undefined;
  const fine = pax?.mtime ? Number.parseFloat(pax.mtime) : NaN;
  if (Number.isFinite(fine)) return new Date(fine * 1000);
  return h.mtime ?? new Date(0);
}

/** Create a new regular file (never through a symlink, never over an existing inode) from `data`. */
async function writeFileFrom(data: AsyncIterable<unknown> | null, p: string, mode: number, mtime: Date): Promise<void> {
  const fh = await open(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    if (data) for await (const chunk of data) await fh.write(chunk as Buffer);
    await fh.chmod(mode); // explicit: the creation mode is subject to the umask
    await fh.utimes(mtime, mtime);
  } finally {
    await fh.close();
  }
}
