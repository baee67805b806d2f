// Reading an OCI image layout (image-spec image-layout.md) from a directory or a tar:
// `oci-layout`, `index.json`, `blobs/sha256/<hex>`. Each index.json entry is a root; its name
// comes from `io.containerd.image.name` (a full reference, as Docker 25+ and ocisave write it)
// or `org.opencontainers.image.ref.name` (a full reference, or only a tag as skopeo writes for
// `oci:DIR:TAG` — then the repository is named after the bundle). Children of an index that are
// absent are not an error: a layout saved for some platforms keeps the full index bytes.
import { Readable } from 'node:stream';
import { parseReference } from '../ref/reference.js';
import { hexOf } from '../cache/cache.js';
import type { FileStore } from './store.js';
import {
  BundleError,
  emptyRepository,
  fallbackRepositoryName,
  isSha256Digest,
  manifestMediaType,
  manifestRefs,
  MAX_MANIFEST_BYTES,
  type Bundle,
  type BundleFormat,
  type BundleProblem,
  type BundleRepository,
  type ReadOptions,
  type StoredManifest,
} from './types.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const CONTAINERD_NAME = 'io.containerd.image.name';
const TAG_RE = /^[\w][\w.-]{0,127}$/;

export function blobMember(digest: string): string {
  return `blobs/sha256/${hexOf(digest)}`;
}

export interface RootName {
  repository: string;
  tag?: string;
  /** Only when the name is a full reference. */
  registry?: string;
}

/** Where an index.json entry belongs: repository and tag from its annotations. */
export function rootName(annotations: Record<string, string> | undefined, fallback: string): RootName | undefined {
  const full = annotations?.[CONTAINERD_NAME];
  const refName = annotations?.[REF_NAME];
  for (const name of [full, refName]) {
    if (!name) continue;
    if (TAG_RE.test(name) && name === refName && !full) return { repository: fallback, tag: name };
    try {
      // A digest-only name ("repo@sha256:…") has no tag: parseReference defaults one only without a digest.
      const ref = parseReference(name);
      return { repository: ref.repository, tag: ref.tag, registry: ref.registry };
    } catch {
      // try the other annotation
    }
  }
  return undefined;
}

interface IndexJson {
  manifests?: { mediaType?: string; digest?: string; size?: number; annotations?: Record<string, string> }[];
}

export interface OciScan {
  repositories: Map<string, BundleRepository>;
  manifests: Map<string, StoredManifest>;
  problems: BundleProblem[];
  /** Index entries whose manifests are absent (a platform subset), as "index → child". */
  absentChildren: string[];
}

/** Read index.json and walk every root, collecting names, manifests and blobs. */
export async function scanOciLayout(store: FileStore, fallbackName = fallbackRepositoryName(store.location)): Promise<OciScan> {
  const problems: BundleProblem[] = [];
  const repositories = new Map<string, BundleRepository>();
  const manifests = new Map<string, StoredManifest>();
  const absentChildren: string[] = [];
  const where = store.location;

  const layoutSize = await store.size('oci-layout');
  if (layoutSize === undefined) {
    problems.push({ kind: 'bad-layout', path: 'oci-layout', message: `${where}: oci-layout file missing` });
  } else {
    try {
      const v = JSON.parse((await store.read('oci-layout', 4096)).toString('utf8')) as { imageLayoutVersion?: string };
      if (typeof v.imageLayoutVersion !== 'string') throw new Error('no imageLayoutVersion');
    } catch {
      problems.push({ kind: 'bad-layout', path: 'oci-layout', message: `${where}: oci-layout is not {"imageLayoutVersion": …}` });
    }
  }
  let index: IndexJson;
  try {
    index = JSON.parse((await store.read('index.json', MAX_MANIFEST_BYTES)).toString('utf8')) as IndexJson;
  } catch (err) {
    throw new BundleError(`${where}: cannot read index.json (${(err as Error).message})`);
  }
  if (!Array.isArray(index.manifests)) throw new BundleError(`${where}: index.json has no "manifests" list`);

  const load = async (digest: string, hint: string | undefined): Promise<StoredManifest | undefined> => {
    const have = manifests.get(digest);
    if (have) return have;
    const size = await store.size(blobMember(digest));
    if (size === undefined) return undefined;
    const bytes = await store.read(blobMember(digest), MAX_MANIFEST_BYTES);
    const m = { digest, mediaType: manifestMediaType(bytes, hint, `manifest ${digest}`), bytes };
    manifests.set(digest, m);
    return m;
  };

  const walk = async (repo: BundleRepository, digest: string, hint: string | undefined, parent?: string): Promise<void> => {
    if (repo.manifests.has(digest)) return;
    let m: StoredManifest | undefined;
    try {
      m = await load(digest, hint);
    } catch (err) {
      problems.push({ kind: 'bad-manifest', digest, repository: repo.name, message: `manifest ${digest}: ${(err as Error).message}` });
      return;
    }
    if (!m) {
      if (parent) absentChildren.push(`${parent} → ${digest}`);
      else problems.push({ kind: 'missing-manifest', digest, repository: repo.name, message: `index.json names ${digest}, which is not under blobs/` });
      return;
    }
    repo.manifests.add(digest);
    let refs;
    try {
      refs = manifestRefs(m.mediaType, m.bytes, `manifest ${digest}`);
    } catch (err) {
      problems.push({ kind: 'bad-manifest', digest, repository: repo.name, message: (err as Error).message });
      return;
    }
    for (const b of refs.blobs) repo.blobs.add(b.digest);
    for (const c of refs.manifests) await walk(repo, c.digest, c.mediaType || undefined, digest);
  };

  for (const [i, d] of index.manifests.entries()) {
    if (!d || typeof d.digest !== 'string' || !isSha256Digest(d.digest)) {
      problems.push({ kind: 'bad-layout', path: 'index.json', message: `${where}: index.json entry ${i} has no sha256 digest` });
      continue;
    }
    const name = rootName(d.annotations, fallbackName) ?? { repository: fallbackName };
    let repo = repositories.get(name.repository);
    if (!repo) repositories.set(name.repository, (repo = emptyRepository(name.repository)));
    repo.registry ??= name.registry;
    if (name.tag) {
      const prev = repo.tags.get(name.tag);
      if (prev && prev !== d.digest) {
        problems.push({ kind: 'bad-layout', path: 'index.json', message: `${where}: ${name.repository}:${name.tag} names both ${prev} and ${d.digest}; keeping the first` });
      } else {
        repo.tags.set(name.tag, d.digest);
      }
    }
    await walk(repo, d.digest, d.mediaType);
  }
  return { repositories, manifests, problems, absentChildren };
}

/** An OCI layout, as a directory (`--format oci`) or a tar (`--format oci-archive`). */
export class OciBundle implements Bundle {
  readonly format: BundleFormat = 'oci';

  constructor(
    readonly path: string,
    readonly store: FileStore,
    /** What index.json and the walk from its roots found (verify reads it; nothing is scanned twice). */
    readonly scan: OciScan,
  ) {}

  static async open(path: string, store: FileStore): Promise<OciBundle> {
    return new OciBundle(path, store, await scanOciLayout(store));
  }

  get repositories(): Map<string, BundleRepository> {
    return this.scan.repositories;
  }

  get problems(): BundleProblem[] {
    return this.scan.problems;
  }

  async blobSize(digest: string): Promise<number | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    return this.store.size(blobMember(digest));
  }

  openBlob(digest: string, start = 0, end?: number, opts?: ReadOptions): Readable {
    if (end !== undefined && end < start) return Readable.from([]);
    return this.store.stream(blobMember(digest), start, end, opts);
  }

  async manifest(digest: string): Promise<StoredManifest | undefined> {
    return this.scan.manifests.get(digest);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}
