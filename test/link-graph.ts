// Test helper for the linkers: images built in memory, committed into a real Cache, and an
// ImageGraph over them exactly as resolve would produce it (no registry, no download).
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, readlink, lstat, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import { Cache } from '../src/cache/cache.js';
import type { Platform } from '../src/ref/platform.js';
import { parseReference } from '../src/ref/reference.js';
import { blobsOf, leafManifests, walkNodes, type BlobNeed, type Descriptor, type GraphNode, type ImageGraph, type IndexNode, type ManifestNode, type ResolvedImage } from '../src/resolve/graph.js';
import { MT } from '../src/util/mediatypes.js';
import { configJson, type BuiltLayer } from './fixtures/index.js';

export const sha = (b: Uint8Array | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export async function tempDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `ocisave-${label}-`));
}

export class GraphBuilder {
  readonly images: ResolvedImage[] = [];
  private constructor(readonly cache: Cache) {}

  static async create(dir: string): Promise<GraphBuilder> {
    return new GraphBuilder(Cache.open(dir));
  }

  async blob(bytes: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = sha(bytes);
    if (!this.cache.hasBlob(digest)) {
      const tmp = this.cache.tempPath('test');
      await writeFile(tmp, bytes);
      await this.cache.commitBlob(digest, tmp, bytes.length, mediaType);
    }
    return { mediaType, digest, size: bytes.length };
  }

  /** An image manifest (docker v2 or OCI) over built layers; `diffIds` overrides the config's (to make it lie). */
  async image(spec: {
    format: 'docker' | 'oci';
    layers: BuiltLayer[];
    platform?: Platform;
    config?: Record<string, unknown>;
    diffIds?: string[];
    uncompressedLayers?: boolean;
  }): Promise<ManifestNode> {
    const docker = spec.format === 'docker';
    const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' };
    const layers: Descriptor[] = [];
    for (const l of spec.layers) {
      const mt = spec.uncompressedLayers ? MT.ociLayer : docker ? MT.dockerLayerGzip : MT.ociLayerGzip;
      layers.push(await this.blob(spec.uncompressedLayers ? l.tar : l.gz, mt));
    }
    const config = await this.blob(configJson({ platform, config: spec.config }, spec.diffIds ?? spec.layers.map((l) => l.diffId)), docker ? MT.dockerConfig : MT.ociConfig);
    const mediaType = docker ? MT.dockerManifest : MT.ociManifest;
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, config, layers }, null, docker ? 3 : undefined));
    return { kind: 'manifest', digest: sha(bytes), mediaType, bytes, platform, config, layers };
  }

  /** A Helm-chart-like artifact: non-image config, one opaque layer. */
  async artifact(name: string): Promise<ManifestNode> {
    const config = await this.blob(Buffer.from(JSON.stringify({ name, version: '1.0.0', apiVersion: 'v2' })), MT.helmConfig);
    const layer = await this.blob(Buffer.from(`chart ${name}`), 'application/vnd.cncf.helm.chart.content.v1.tar+gzip');
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config, layers: [layer] }));
    return { kind: 'manifest', digest: sha(bytes), mediaType: MT.ociManifest, bytes, config, layers: [layer] };
  }

  /**
   * An index listing `all` manifests (and `extra` descriptors, which are never resolved: platforms
   * not selected); `selected` are the children present, as resolve leaves them after --platform.
   */
  index(all: ManifestNode[], selected: ManifestNode[] = all, extra: Descriptor[] = [], docker = false): IndexNode {
    const manifests = [
      ...all.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform: m.platform })),
      ...extra,
    ];
    const mediaType = docker ? MT.dockerList : MT.ociIndex;
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
    return { kind: 'index', digest: sha(bytes), mediaType, bytes, children: selected };
  }

  add(input: string, root: GraphNode): ResolvedImage {
    const image = { input, ref: parseReference(input), root };
    this.images.push(image);
    return image;
  }

  graph(): ImageGraph {
    const blobs = new Map<string, BlobNeed>();
    for (const image of this.images) {
      for (const m of leafManifests(image.root)) {
        for (const d of blobsOf(m)) blobs.set(d.digest, { ...d, sources: [{ registry: image.ref.registry, repository: image.ref.repository }] });
      }
    }
    return { images: [...this.images], blobs, failures: [] };
  }

  /** Every manifest digest and blob digest the graph's outputs must contain. */
  expectedDigests(): { manifests: Set<string>; blobs: Set<string> } {
    const manifests = new Set<string>();
    const blobs = new Set<string>();
    for (const image of this.images) {
      for (const n of walkNodes(image.root)) manifests.add(n.digest);
      for (const m of leafManifests(image.root)) for (const d of blobsOf(m)) blobs.add(d.digest);
    }
    return { manifests, blobs };
  }

  async close(): Promise<void> {
    await this.cache.close();
  }
}

export interface TarFileInfo {
  size: number;
  digest: string;
  type: string;
}

/** Every entry of a tar file: name → size, sha256, type (streamed, nothing kept but the hash). */
export async function readTar(file: string): Promise<Map<string, TarFileInfo>> {
  const { createReadStream } = await import('node:fs');
  const { pipeline } = await import('node:stream/promises');
  const out = new Map<string, TarFileInfo>();
  const ex = tar.extract();
  const feeding = pipeline(createReadStream(file), ex);
  for await (const entry of ex) {
    const h = createHash('sha256');
    let size = 0;
    for await (const chunk of entry) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    if (out.has(entry.header.name)) throw new Error(`${file}: entry ${entry.header.name} appears twice`);
    out.set(entry.header.name, { size, digest: `sha256:${h.digest('hex')}`, type: entry.header.type });
  }
  await feeding;
  return out;
}

/** Read one tar entry's bytes (small files: manifest.json, index.json). */
export async function readTarEntry(file: string, name: string): Promise<Buffer | undefined> {
  const { createReadStream } = await import('node:fs');
  const { pipeline } = await import('node:stream/promises');
  const ex = tar.extract();
  const feeding = pipeline(createReadStream(file), ex);
  let found: Buffer | undefined;
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    if (entry.header.name === name) found = Buffer.concat(chunks);
  }
  await feeding;
  return found;
}

/** Files of a directory tree: relative path → size, sha256 (regular files only). */
export async function readTree(root: string): Promise<Map<string, TarFileInfo>> {
  const out = new Map<string, TarFileInfo>();
  const walk = async (rel: string) => {
    for (const name of await readdir(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, r));
      if (st.isDirectory()) await walk(r);
      else {
        const bytes = await readFile(join(root, r));
        out.set(r, { size: bytes.length, digest: sha(bytes), type: 'file' });
      }
    }
  };
  await walk('');
  return out;
}

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'other';
  mode?: number;
  mtime?: number | 'unpack time';
  size?: number;
  digest?: string;
  target?: string;
  /** Other paths sharing this inode (hard links), sorted. */
  links?: string[];
}

/** Describe a root filesystem for comparison: type, permission bits, content, link targets, hard-link groups. */
/**
 * `mtimes`: record modification times (seconds). Times at or after `setSince` (seconds) were set
 * by the unpacking itself (directories no layer dates, or that got new entries): recorded as
 * 'unpack time', since two tools unpacking a second apart cannot agree on them.
 */
export async function describeTree(root: string, opts: { mtimes?: boolean; setSince?: number } = {}): Promise<Record<string, TreeEntry>> {
  const out: Record<string, TreeEntry> = {};
  const inodes = new Map<number, string[]>();
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(root, r);
      const st = await lstat(p);
      const e: TreeEntry = { type: 'other', mode: st.mode & 0o7777 };
      if (opts.mtimes) {
        const secs = Math.floor(st.mtimeMs / 1000);
        e.mtime = opts.setSince !== undefined && secs >= opts.setSince ? 'unpack time' : secs;
      }
      if (st.isDirectory()) e.type = 'dir';
      else if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.target = await readlink(p);
        delete e.mode; // symlink permission bits carry no meaning on Linux
      } else if (st.isFIFO()) e.type = 'fifo';
      else if (st.isFile()) {
        e.type = 'file';
        const bytes = await readFile(p);
        e.size = bytes.length;
        e.digest = sha(bytes);
        if (st.nlink > 1) inodes.set(st.ino, [...(inodes.get(st.ino) ?? []), r]);
      }
      out[r] = e;
      if (e.type === 'dir') await walk(r);
    }
  };
  await walk('');
  for (const group of inodes.values()) for (const r of group) out[r]!.links = [...group].sort();
  return out;
}

export async function rmrf(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((p) => rm(p, { recursive: true, force: true })));
}
