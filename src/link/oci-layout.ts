// OCI image layout (image-spec image-layout.md), as a directory (`--format oci`) or as a tar
// of the same tree (`--format oci-archive`): `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
//
// index.json lists the root of every saved reference (an index stays an index: its bytes are
// unchanged, and only the children selected by --platform are present under blobs/; with one
// platform selected, `onePlatform` names that platform's manifest instead, as crane pull --platform
// does, since umoci 0.4.7 cannot unpack an index), annotated
// with `org.opencontainers.image.ref.name` = the full normalised reference, e.g.
// `127.0.0.1:5000/app/web:1.0` or `docker.io/library/alpine:3.19`. skopeo 1.9 splits
// `oci:DIR:NAME` at the first colon only, and umoci 0.4.7 splits `--image DIR:NAME` the same
// way, so names with ':' '/' '@' work with both (checked: `skopeo inspect oci:DIR:127.0.0.1:5000/app/web:1.0`,
// `umoci unpack --image DIR:127.0.0.1:5000/app/web:1.0`, and `...app/web@sha256:<hex>`); the spec's
// ref.name grammar allows ':' '@' '/' too. Full names, unlike bare tags, cannot collide when many
// repositories share a tag such as `latest`. `io.containerd.image.name` carries the same name for
// containerd's importer.
//
// Docker-typed manifests and manifest lists are converted to their OCI equivalents by default,
// as `skopeo copy ... oci:` does: skopeo 1.9 looks names up only among index.json entries whose
// mediaType is OCI (a docker v2 entry is "no descriptor found", checked) and umoci 0.4.7 refuses
// docker manifests ("not implemented"). Config and layer blobs stay byte-identical (the image ID is
// unchanged); only those manifests' digests change. OCI manifests and indexes keep their bytes.
// `preserveDigests` keeps every manifest byte as fetched (crane/containerd read that; skopeo by
// name and umoci do not) — for digest-exact copies the registry format is the better fit.
import type { Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { LinkBlobs } from './blobs.js';
import { sha256Bytes } from '../hash/hasher.js';
import { hexOf } from '../cache/cache.js';
import { formatReference } from '../ref/reference.js';
import { blobsOf, walkNodes, type Descriptor, type GraphNode, type ImageGraph, type ResolvedImage } from '../resolve/graph.js';
import { MT } from '../util/mediatypes.js';
import { openSource, placeBlob, RunDirs, writeAtomically, type FileSource } from './files.js';
import type { LinkOptions, LinkResult } from './index.js';
import { InvalidInputError, OcisaveError } from '../util/errors.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_NAME = 'io.containerd.image.name';
export const OCI_LAYOUT = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

/** Fixed entry times keep archives byte-for-byte reproducible for the same inputs. */
const EPOCH = new Date(0);

export function blobName(digest: string): string {
  return `blobs/sha256/${hexOf(digest)}`;
}

export function sha256(bytes: Buffer): string {
  return sha256Bytes(bytes);
}

/** Where an output's files go: a directory (hard links from the cache) or a tar stream. */
export interface OutputSink {
  addBytes(name: string, bytes: Buffer): Promise<void>;
  addFile(name: string, src: FileSource, size: number): Promise<void>;
  readonly counts: { linked: number; copied: number; written: number };
}

export class DirSink implements OutputSink {
  readonly counts = { linked: 0, copied: 0, written: 0 };
  private readonly dirs = new RunDirs();
  constructor(private readonly root: string) {}

  async addBytes(name: string, bytes: Buffer): Promise<void> {
    const p = join(this.root, name);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, bytes, { flag: 'wx' });
  }

  async addFile(name: string, src: FileSource, size: number): Promise<void> {
    const how = await placeBlob(src, join(this.root, name), size, this.dirs);
    if (how === 'copied') this.counts.copied++;
    else this.counts.linked++;
  }
}

/** A tar written as it is built; entries are streamed from files, never held in memory whole. */
export class TarSink implements OutputSink {
  readonly counts = { linked: 0, copied: 0, written: 0 };
  private readonly pack = tar.pack();
  private readonly done: Promise<void>;
  private readonly dirs = new Set<string>();

  private constructor(fh: FileHandle) {
    this.done = pipeline(this.pack, fh.createWriteStream());
    this.done.catch(() => {}); // reported by finish()
  }

  /** Opened before anything else happens: a path we cannot create fails fast, and the staging name is visible at once. */
  static async create(file: string): Promise<TarSink> {
    return new TarSink(await open(file, 'wx'));
  }

  private async ensureDirs(name: string): Promise<void> {
    const parts = name.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = `${parts.slice(0, i).join('/')}/`;
      if (this.dirs.has(dir)) continue;
      this.dirs.add(dir);
      await this.write({ name: dir, type: 'directory', mode: 0o755, mtime: EPOCH });
    }
  }

  private write(header: Partial<tar.Header> & { name: string }, bytes?: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pack.entry(header, bytes ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  }

  async addBytes(name: string, bytes: Buffer): Promise<void> {
    await this.ensureDirs(name);
    await this.write({ name, type: 'file', size: bytes.length, mode: 0o644, mtime: EPOCH }, bytes);
  }

  async addFile(name: string, src: FileSource, size: number): Promise<void> {
    await this.ensureDirs(name);
    // Read from the checked descriptor: a link or a swapped file never lands in the archive.
    const { fh } = await openSource(src, size);
    try {
      // The entry's size is fixed in its header; tar-stream fails the entry if the file yields more or less.
      const entry = this.pack.entry({ name, type: 'file', size, mode: 0o644, mtime: EPOCH });
      await pipeline(fh.createReadStream({ start: 0, autoClose: false, highWaterMark: 1 << 20 }), entry);
    } finally {
      await fh.close();
    }
    this.counts.written++;
  }

  async finish(): Promise<void> {
    this.pack.finalize();
    await this.done;
  }

  /** Stop writing; resolves once the file is closed, so the caller can remove it for good. */
  async abort(err: Error): Promise<void> {
    this.pack.destroy(err);
    await this.done.catch(() => {});
  }
}

/**
 * Refuse to replace something that is not ours to replace: an output directory must be absent,
 * empty, or already an OCI layout (or registry layout, per `marker`); an output file must not be a directory.
 */
export async function guardOutput(out: string, kind: 'file' | 'dir', marker?: string): Promise<void> {
  let st: Stats;
  try {
    st = await lstat(out);
  } catch {
    return;
  }
  if (kind === 'file') {
    if (st.isDirectory()) throw new InvalidInputError(`${out} is a directory: give a file name for the archive`);
    return;
  }
  if (!st.isDirectory()) throw new InvalidInputError(`${out} exists and is not a directory`);
  const entries = await readdir(out);
  if (entries.length && !(marker && entries.includes(marker))) {
    throw new InvalidInputError(`${out} exists, is not empty and is not an OCI layout: refusing to replace it; choose another directory`);
  }
}

/** A root as index.json (and the docker archive's index.json) lists it. */
export function rootDescriptor(node: GraphNode, name: string, extra: Partial<Descriptor> = {}): Descriptor {
  return {
    mediaType: node.mediaType,
    digest: node.digest,
    size: node.bytes.length,
    ...extra,
    annotations: { [CONTAINERD_NAME]: name, [REF_NAME]: name },
  };
}

export function ociIndexBytes(manifests: Descriptor[]): Buffer {
  return Buffer.from(`${JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests }, null, 2)}\n`);
}

export function imageLabel(image: ResolvedImage): string {
  const full = formatReference(image.ref);
  return image.input === full ? full : `${image.input} (${full})`;
}

const OCI_TYPE_OF: Record<string, string> = {
  [MT.dockerManifest]: MT.ociManifest,
  [MT.dockerList]: MT.ociIndex,
  [MT.dockerConfig]: MT.ociConfig,
  [MT.dockerLayerGzip]: MT.ociLayerGzip,
  'application/vnd.docker.image.rootfs.diff.tar': MT.ociLayer,
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar': 'application/vnd.oci.image.layer.nondistributable.v1.tar',
};

export const ociType = (mt: string) => OCI_TYPE_OF[mt] ?? mt;
export const ociDescriptor = <T extends { mediaType: string }>(d: T): T => ({ ...d, mediaType: ociType(d.mediaType) });

/**
 * The OCI equivalent of a node: docker manifests and lists rewritten with OCI media types (same
 * config and layer blobs), indexes rewritten when a child's digest changed; anything else unchanged.
 */
export function toOciNode(node: GraphNode, memo = new Map<string, GraphNode>()): GraphNode {
  const done = memo.get(node.digest);
  if (done) return done;
  let out: GraphNode = node;
  if (node.kind === 'manifest' && node.mediaType === MT.dockerManifest) {
    const json = JSON.parse(node.bytes.toString('utf8')) as { config: Descriptor; layers: Descriptor[]; annotations?: unknown };
    const m: Record<string, unknown> = { schemaVersion: 2, mediaType: MT.ociManifest, config: ociDescriptor(json.config), layers: json.layers.map(ociDescriptor) };
    if (json.annotations) m.annotations = json.annotations;
    const bytes = Buffer.from(JSON.stringify(m));
    out = { ...node, mediaType: MT.ociManifest, bytes, digest: sha256(bytes), config: ociDescriptor(node.config), layers: node.layers.map(ociDescriptor) };
  } else if (node.kind === 'index') {
    const children = node.children.map((c) => toOciNode(c, memo));
    const changed = new Map<string, GraphNode>();
    node.children.forEach((c, i) => children[i] !== c && changed.set(c.digest, children[i]!));
    if (changed.size || node.mediaType !== MT.ociIndex) {
      const json = JSON.parse(node.bytes.toString('utf8')) as Record<string, unknown> & { manifests: Descriptor[] };
      const manifests = json.manifests.map((d) => {
        const c = changed.get(d.digest);
        return c ? { ...d, mediaType: c.mediaType, digest: c.digest, size: c.bytes.length } : ociDescriptor(d);
      });
      const bytes = Buffer.from(JSON.stringify({ ...json, mediaType: MT.ociIndex, manifests }));
      out = { ...node, mediaType: MT.ociIndex, bytes, digest: sha256(bytes), children };
    }
  }
  memo.set(node.digest, out);
  return out;
}

interface LayoutPlan {
  manifests: Map<string, Buffer>;
  blobs: Map<string, Descriptor>;
  index: Buffer;
  warnings: string[];
}

/** Everything the layout holds, checked before anything is written. */
export function planLayout(graph: ImageGraph, cache: LinkBlobs, preserveDigests = false, onePlatform = false): LayoutPlan {
  const memo = new Map<string, GraphNode>();
  const manifests = new Map<string, Buffer>();
  const blobs = new Map<string, Descriptor>();
  const roots: Descriptor[] = [];
  const named = new Map<string, string>();
  const warnings: string[] = [];
  for (const image of graph.images) {
    const name = formatReference(image.ref);
    const seen = named.get(name);
    if (seen !== undefined) {
      if (seen !== image.root.digest) warnings.push(`${image.input}: ${name} was already saved as ${seen}; keeping that one`);
      continue;
    }
    named.set(name, image.root.digest);
    for (const node of walkNodes(image.root)) {
      if (sha256(node.bytes) !== node.digest) {
        throw new OcisaveError('DIGEST_MISMATCH', `${imageLabel(image)}: manifest bytes do not hash to ${node.digest}; refusing to write a layout that would not verify`);
      }
    }
    const entry = onePlatform ? platformManifest(image.root) : image.root;
    const root = preserveDigests ? entry : toOciNode(entry, memo);
    roots.push(rootDescriptor(root, name));
    for (const node of walkNodes(root)) {
      manifests.set(node.digest, node.bytes);
      if (node.kind !== 'manifest') continue;
      for (const d of blobsOf(node)) {
        if (!cache.hasBlob(d.digest)) {
          throw new OcisaveError('NOT_FOUND', `${imageLabel(image)}: blob ${d.digest} is not in the cache at ${cache.dir}; fetch the image first (linking never downloads)`);
        }
        blobs.set(d.digest, d);
      }
    }
  }
  if (roots.length === 0) throw new InvalidInputError('nothing to write: no image was resolved');
  return { manifests, blobs, index: ociIndexBytes(roots), warnings };
}

/** An index whose selection kept one child (down to one manifest) stands for that manifest; anything else for itself. */
function platformManifest(node: GraphNode): GraphNode {
  while (node.kind === 'index' && node.children.length === 1) node = node.children[0]!;
  return node;
}

async function writeLayout(sink: OutputSink, plan: LayoutPlan, opts: LinkOptions): Promise<void> {
  for (const [digest, d] of plan.blobs) {
    await opts.onBlob?.({ digest, size: d.size });
    await sink.addFile(blobName(digest), opts.cache.blobSource(digest), d.size);
  }
  for (const [digest, bytes] of plan.manifests) {
    await opts.onBlob?.({ digest, size: bytes.length });
    await sink.addBytes(blobName(digest), bytes);
  }
  await sink.addBytes('oci-layout', OCI_LAYOUT);
  await sink.addBytes('index.json', plan.index);
}

function report(plan: LayoutPlan, opts: LinkOptions): void {
  for (const w of plan.warnings) opts.onWarning?.(w);
}

/** `--format oci`: the layout as a directory, blobs hard-linked from the cache where possible. */
export async function linkOciLayout(opts: LinkOptions): Promise<LinkResult> {
  const plan = planLayout(opts.graph, opts.cache, opts.preserveDigests, opts.onePlatform);
  await guardOutput(opts.out, 'dir', 'oci-layout');
  report(plan, opts);
  return writeAtomically(opts.out, async (staging) => {
    await mkdir(staging);
    const sink = new DirSink(staging);
    await writeLayout(sink, plan, opts);
    return { path: opts.out, ...sink.counts, written: plan.manifests.size + 2, warnings: plan.warnings };
  });
}

/** `--format oci-archive`: the same layout as one tar file. */
export async function linkOciArchive(opts: LinkOptions): Promise<LinkResult> {
  const plan = planLayout(opts.graph, opts.cache, opts.preserveDigests, opts.onePlatform);
  await guardOutput(opts.out, 'file');
  report(plan, opts);
  return writeAtomically(opts.out, async (staging) => {
    const sink = await TarSink.create(staging);
    try {
      await writeLayout(sink, plan, opts);
      await sink.finish();
    } catch (err) {
      await sink.abort(err as Error);
      throw err;
    }
    return { path: opts.out, ...sink.counts, warnings: plan.warnings };
  });
}
