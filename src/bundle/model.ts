// A bundle as a source, like a registry (DESIGN.md "one image model"): the images it holds as
// the ImageGraph every linker takes, and its blobs as the linkers read them (LinkBlobs).
// `ocisave convert` is this plus a linker. The bundle is untrusted: manifests are re-hashed
// against their names, descriptors are checked before they name a file, the index walk is
// bounded as resolve's is, and every blob is hashed while it is staged for the linker.
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256Bytes, sha256Hasher } from '../hash/hasher.js';
import type { LinkBlobs } from '../link/blobs.js';
import { ownFile, type FileSource } from '../link/files.js';
import { checkDigest, checkSize, digestHex } from '../ref/digest.js';
import type { Descriptor } from '../ref/manifest.js';
import { normalizePlatform, selectorMatches, type Platform, type PlatformSelector } from '../ref/platform.js';
import { formatReference, type Reference } from '../ref/reference.js';
import { blobsOf, leafManifests, walkNodes, type BlobNeed, type GraphNode, type ImageGraph, type ResolvedImage } from '../resolve/graph.js';
import { MAX_INDEX_DEPTH, MAX_MANIFESTS_PER_INPUT } from '../resolve/resolve.js';
import { isIndexType } from '../util/mediatypes.js';
import { BundleError, manifestRefs, type Bundle, type BundleRepository } from './types.js';

/** Host given to images a bundle names without one (a registry layout; an OCI tag-only name), as podman names local images. */
export const LOCAL_REGISTRY = 'localhost';

export interface ModelOptions {
  /** Children of multi-platform indexes to keep (default: all the bundle holds). */
  platforms?: PlatformSelector;
}

interface Walk {
  bundle: Bundle;
  platforms: PlatformSelector;
  label: string;
  chain: string[];
  budget: { left: number };
}

/** The images of a bundle: every tag, then each manifest no tag or index reaches (saved by digest), by repository. */
export async function bundleGraph(bundle: Bundle, opts: ModelOptions = {}): Promise<ImageGraph> {
  const graph: ImageGraph = { images: [], blobs: new Map(), failures: [] };
  const platforms = opts.platforms ?? 'all';
  for (const repo of [...bundle.repositories.values()].sort((a, b) => a.name.localeCompare(b.name))) {
    const reached = new Set<string>();
    const add = async (ref: Reference): Promise<void> => {
      const label = formatReference(ref);
      const root = await node(ref.digest ?? repo.tags.get(ref.tag!)!, undefined, undefined, { bundle, platforms, label, chain: [], budget: { left: MAX_MANIFESTS_PER_INPUT } });
      if (!root) throw new BundleError(`${bundle.path}: ${label} names ${ref.digest ?? repo.tags.get(ref.tag!)}, whose manifest the bundle does not hold`);
      for (const n of walkNodes(root)) reached.add(n.digest);
      const image: ResolvedImage = { input: label, ref, root };
      graph.images.push(image);
      addBlobs(graph.blobs, image);
    };
    const registry = repo.registry ?? LOCAL_REGISTRY;
    for (const tag of [...repo.tags.keys()].sort()) await add({ registry, repository: repo.name, tag });
    for (const digest of await untaggedRoots(bundle, repo, reached)) await add({ registry, repository: repo.name, digest });
  }
  return graph;
}

/** Manifests of `repo` that no tag reached and no index of the repository lists. */
async function untaggedRoots(bundle: Bundle, repo: BundleRepository, reached: Set<string>): Promise<string[]> {
  const children = new Set<string>();
  const candidates: string[] = [];
  for (const digest of [...repo.manifests].sort()) {
    const m = await bundle.manifest(digest);
    if (!m) continue;
    for (const c of manifestRefs(m.mediaType, m.bytes, `${bundle.path}: manifest ${digest}`).manifests) children.add(c.digest);
    if (!reached.has(digest)) candidates.push(digest);
  }
  return candidates.filter((d) => !children.has(d));
}

function parseJson(bytes: Buffer, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(bytes.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new BundleError(`${what} is not a JSON manifest`);
}

/** A descriptor from the bundle, its digest and size checked before either names a file. */
function descriptor(d: unknown, what: string): Descriptor {
  if (!d || typeof d !== 'object') throw new BundleError(`${what}: not a descriptor`);
  const o = d as Partial<Descriptor>;
  try {
    checkDigest(o.digest, what);
    checkSize(o.size, what);
  } catch (err) {
    throw new BundleError((err as Error).message);
  }
  return { ...o, mediaType: typeof o.mediaType === 'string' ? o.mediaType : '' } as Descriptor;
}

/** An index entry's platform, when it is one (os and architecture strings); anything else is no platform. */
function platformOf(p: unknown): Platform | undefined {
  const o = p as Partial<Platform> | undefined;
  if (!o || typeof o.os !== 'string' || typeof o.architecture !== 'string') return undefined;
  return normalizePlatform({ os: o.os, architecture: o.architecture, variant: typeof o.variant === 'string' ? o.variant : undefined });
}

/** The node for manifest `digest`, or undefined when the bundle does not hold it (an index child left out). */
async function node(digest: string, hint: string | undefined, platform: Platform | undefined, walk: Walk): Promise<GraphNode | undefined> {
  const m = await walk.bundle.manifest(digest);
  if (!m) return undefined;
  const where = `${walk.bundle.path}: ${walk.label}: manifest ${digest}`;
  if (sha256Bytes(m.bytes) !== digest) throw new BundleError(`${where} does not hash to its name: the bundle is damaged (run ocisave verify)`);
  if (--walk.budget.left < 0) throw new BundleError(`${walk.bundle.path}: ${walk.label}: more than ${MAX_MANIFESTS_PER_INPUT} manifests under one name`);
  const json = parseJson(m.bytes, where);
  const mediaType = m.mediaType || hint || '';
  if (isIndexType(mediaType) || (Array.isArray(json.manifests) && !json.layers)) {
    const chain = [...walk.chain, digest];
    if (chain.length > MAX_INDEX_DEPTH) throw new BundleError(`${where}: indexes nested deeper than ${MAX_INDEX_DEPTH}`);
    const entries = (Array.isArray(json.manifests) ? json.manifests : []).map((d, i) => descriptor(d, `${where} manifests[${i}]`));
    const children: GraphNode[] = [];
    for (const e of entries) {
      const p = platformOf(e.platform);
      if (walk.platforms !== 'all' && !(p && selectorMatches(walk.platforms, p))) continue;
      if (chain.includes(e.digest)) throw new BundleError(`${where}: index cycle through ${e.digest}`);
      const child = await node(e.digest, e.mediaType || undefined, p, { ...walk, chain });
      if (child) children.push(child);
    }
    if (children.length === 0) throw new BundleError(`${where}: the bundle holds no manifest of this index for the platforms asked for (--platform)`);
    return { kind: 'index', digest, mediaType, bytes: m.bytes, children };
  }
  if (json.layers !== undefined && !Array.isArray(json.layers)) throw new BundleError(`${where}: "layers" is not a list`);
  const config = descriptor(json.config, `${where} config`);
  const layers = ((json.layers as unknown[] | undefined) ?? []).map((d, i) => descriptor(d, `${where} layers[${i}]`));
  return { kind: 'manifest', digest, mediaType, bytes: m.bytes, platform, config, layers };
}

function addBlobs(blobs: Map<string, BlobNeed>, image: ResolvedImage): void {
  for (const m of leafManifests(image.root)) {
    for (const d of blobsOf(m)) if (!blobs.has(d.digest)) blobs.set(d.digest, { digest: d.digest, size: d.size, mediaType: d.mediaType, sources: [] });
  }
}

/**
 * A bundle's blobs as a linker reads them. A blob is staged once, on first use, as a file in
 * `stageDir` (which the caller makes beside the output, so the linker hard-links it from there):
 * copied from the bundle through its contained reader while hashed, and refused when its bytes
 * do not match its name. A tar bundle has no file per blob to link, and a directory bundle's
 * files are not ours to link into an output (a later change to one would change the other).
 */
export class BundleBlobs implements LinkBlobs {
  private readonly staged = new Map<string, Promise<void>>();
  private temps = 0;

  private constructor(
    private readonly bundle: Bundle,
    private readonly sizes: Map<string, number>,
    private readonly stageDir: string,
  ) {}

  /** Every blob of `graph` must be in the bundle, with the size its descriptor says. */
  static async open(bundle: Bundle, graph: ImageGraph, stageDir: string): Promise<BundleBlobs> {
    const sizes = new Map<string, number>();
    for (const need of graph.blobs.values()) {
      const size = await bundle.blobSize(need.digest);
      if (size === undefined) throw new BundleError(`${bundle.path} does not hold blob ${need.digest} (a delta bundle? convert needs every blob)`);
      if (size !== need.size) throw new BundleError(`${bundle.path}: blob ${need.digest} is ${size} bytes, but its descriptor says ${need.size}: the bundle is damaged (run ocisave verify)`);
      sizes.set(need.digest, size);
    }
    await mkdir(stageDir, { recursive: true });
    return new BundleBlobs(bundle, sizes, stageDir);
  }

  get dir(): string {
    return this.bundle.path;
  }

  hasBlob(digest: string): boolean {
    return this.sizes.has(digest);
  }

  async readBlob(digest: string, maxBytes: number): Promise<Buffer> {
    const size = this.sizes.get(digest);
    if (size === undefined) throw new BundleError(`${this.bundle.path} does not hold blob ${digest}`);
    if (size > maxBytes) throw new BundleError(`${this.bundle.path}: blob ${digest} is ${size} bytes, more than the ${maxBytes} expected`);
    await this.stage(digest);
    return readFile(this.stagedPath(digest));
  }

  blobSource(digest: string): FileSource {
    const file = ownFile(this.stagedPath(digest));
    return { path: file.path, open: async () => (await this.stage(digest), file.open()) };
  }

  tempPath(label: string): string {
    return join(this.stageDir, `${label}.${++this.temps}`);
  }

  private stagedPath(digest: string): string {
    return join(this.stageDir, `sha256-${digestHex(digest)}`);
  }

  private stage(digest: string): Promise<void> {
    let p = this.staged.get(digest);
    if (!p) this.staged.set(digest, (p = this.copy(digest)));
    return p;
  }

  private async copy(digest: string): Promise<void> {
    const expected = this.sizes.get(digest);
    if (expected === undefined) throw new BundleError(`${this.bundle.path} does not hold blob ${digest}`);
    const path = this.stagedPath(digest);
    const h = sha256Hasher();
    let size = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, done) {
        h.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    await pipeline(this.bundle.openBlob(digest), hashing, createWriteStream(path, { flags: 'wx' }));
    const got = h.digest();
    if (got !== digest || size !== expected) {
      await rm(path, { force: true });
      throw new BundleError(`${this.bundle.path}: blob ${digest} holds ${size} bytes that hash to ${got}: the bundle is damaged (run ocisave verify)`);
    }
  }
}
