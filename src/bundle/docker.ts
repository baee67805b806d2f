// Reading a `docker save` tarball (moby image/tarexport): `manifest.json` =
// [{Config, RepoTags, Layers}]. Docker 25+ and ocisave also put an OCI layout in the same tar
// (index.json, oci-layout, blobs/sha256) holding the manifests themselves: when it is there it is
// read as such, so digests are the registry's. An older archive has no manifest at all; one is
// made per image (docker schema 2, as `docker push` would), so its digest is new — the config
// and layer digests stay what the files hash to.
import { Readable } from 'node:stream';
import { hashStream, sha256Bytes } from '../hash/hasher.js';
import { parseReference } from '../ref/reference.js';
import { MT } from '../util/mediatypes.js';
import { OciBundle, scanOciLayout, type OciScan } from './oci.js';
import { TarStore } from './store.js';
import {
  BundleError,
  emptyRepository,
  fallbackRepositoryName,
  isSha256Digest,
  MAX_MANIFEST_BYTES,
  type Bundle,
  type BundleProblem,
  type BundleRepository,
  type ReadOptions,
  type StoredManifest,
} from './types.js';

export const DOCKER_UNCOMPRESSED_LAYER = 'application/vnd.docker.image.rootfs.diff.tar';

interface ManifestItem {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

const BLOB_MEMBER_RE = /^blobs\/sha256\/([a-f0-9]{64})$/;

/** An OCI layout inside the tar, read as one; `manifest.json` names are all docker load needs. */
async function embeddedLayout(store: TarStore): Promise<OciScan | undefined> {
  if ((await store.size('index.json')) === undefined || (await store.size('oci-layout')) === undefined) return undefined;
  const scan = await scanOciLayout(store, fallbackRepositoryName(store.location));
  // Docker 25+ names its roots; an unnamed layout tells us nothing the manifest.json does not.
  const named = [...scan.repositories.values()].some((r) => r.tags.size > 0);
  return named && scan.repositories.size > 0 ? scan : undefined;
}

async function hashMember(store: TarStore, name: string): Promise<string> {
  return (await hashStream(store.stream(name))).digest;
}

async function head(store: TarStore, name: string, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of store.stream(name, 0, n - 1)) {
    chunks.push(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got >= n) break;
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** A legacy archive: synthesize a docker schema 2 manifest for every manifest.json entry. */
async function synthesize(store: TarStore): Promise<{ scan: OciScan; members: Map<string, string> }> {
  let items: ManifestItem[];
  try {
    items = JSON.parse((await store.read('manifest.json', MAX_MANIFEST_BYTES)).toString('utf8')) as ManifestItem[];
  } catch (err) {
    throw new BundleError(`${store.location}: cannot read manifest.json (${(err as Error).message})`);
  }
  if (!Array.isArray(items)) throw new BundleError(`${store.location}: manifest.json is not a list`);
  const repositories = new Map<string, BundleRepository>();
  const manifests = new Map<string, StoredManifest>();
  const members = new Map<string, string>();
  const problems: BundleProblem[] = [];
  const fallback = fallbackRepositoryName(store.location);

  for (const [i, item] of items.entries()) {
    if (typeof item.Config !== 'string' || !Array.isArray(item.Layers)) {
      problems.push({ kind: 'bad-layout', path: 'manifest.json', message: `${store.location}: manifest.json entry ${i} lacks Config or Layers` });
      continue;
    }
    const configSize = await store.size(item.Config);
    if (configSize === undefined) {
      problems.push({ kind: 'missing-blob', path: item.Config, message: `${store.location}: manifest.json names ${item.Config}, which is not in the archive` });
      continue;
    }
    const config = await store.read(item.Config, MAX_MANIFEST_BYTES);
    const configDigest = sha256Bytes(config);
    members.set(configDigest, item.Config);
    const layers: { mediaType: string; size: number; digest: string }[] = [];
    let complete = true;
    for (const file of item.Layers) {
      const size = await store.size(file);
      if (size === undefined) {
        problems.push({ kind: 'missing-blob', path: file, message: `${store.location}: manifest.json names ${file}, which is not in the archive` });
        complete = false;
        continue;
      }
      const named = BLOB_MEMBER_RE.exec(file);
      const digest = named ? `sha256:${named[1]}` : await hashMember(store, file);
      const magic = await head(store, file, 2);
      const mediaType = magic[0] === 0x1f && magic[1] === 0x8b ? MT.dockerLayerGzip : DOCKER_UNCOMPRESSED_LAYER;
      members.set(digest, file);
      layers.push({ mediaType, size, digest });
    }
    if (!complete) continue;
    const manifest = { schemaVersion: 2, mediaType: MT.dockerManifest, config: { mediaType: MT.dockerConfig, size: config.length, digest: configDigest }, layers };
    const bytes = Buffer.from(JSON.stringify(manifest, null, 3));
    const digest = sha256Bytes(bytes);
    manifests.set(digest, { digest, mediaType: MT.dockerManifest, bytes });

    const names = (item.RepoTags ?? []).flatMap((t) => {
      try {
        const ref = parseReference(t);
        return [{ repository: ref.repository, tag: ref.tag, registry: ref.registry as string | undefined }];
      } catch {
        problems.push({ kind: 'bad-layout', path: 'manifest.json', message: `${store.location}: RepoTags entry "${t}" is not a reference` });
        return [];
      }
    });
    if (names.length === 0) names.push({ repository: fallback, tag: undefined, registry: undefined });
    for (const n of names) {
      let repo = repositories.get(n.repository);
      if (!repo) repositories.set(n.repository, (repo = emptyRepository(n.repository)));
      repo.registry ??= n.registry;
      if (n.tag) repo.tags.set(n.tag, digest);
      repo.manifests.add(digest);
      repo.blobs.add(configDigest);
      for (const l of layers) repo.blobs.add(l.digest);
    }
  }
  return { scan: { repositories, manifests, problems, absentChildren: [] }, members };
}

/** A docker-save tar with an embedded OCI layout reads as that layout. */
class EmbeddedDockerBundle extends OciBundle {
  override readonly format = 'docker' as const;
}

/** A legacy docker-save tar: blobs are archive members found through manifest.json. */
export class LegacyDockerBundle implements Bundle {
  readonly format = 'docker' as const;

  constructor(
    readonly path: string,
    readonly store: TarStore,
    readonly scan: OciScan,
    private readonly members: Map<string, string>,
  ) {}

  get repositories(): Map<string, BundleRepository> {
    return this.scan.repositories;
  }

  get problems(): BundleProblem[] {
    return this.scan.problems;
  }

  async blobSize(digest: string): Promise<number | undefined> {
    if (!isSha256Digest(digest)) return undefined;
    const m = this.scan.manifests.get(digest);
    if (m) return m.bytes.length;
    const member = this.members.get(digest);
    return member === undefined ? undefined : this.store.size(member);
  }

  openBlob(digest: string, start = 0, end?: number, opts?: ReadOptions): Readable {
    const m = this.scan.manifests.get(digest);
    if (m) return Readable.from([m.bytes.subarray(start, end === undefined ? undefined : end + 1)]);
    const member = this.members.get(digest);
    if (member === undefined) throw new BundleError(`${this.path} holds no blob ${digest}`);
    if (end !== undefined && end < start) return Readable.from([]);
    return this.store.stream(member, start, end, opts);
  }

  async manifest(digest: string): Promise<StoredManifest | undefined> {
    return this.scan.manifests.get(digest);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

export async function openDockerArchive(path: string, store: TarStore): Promise<EmbeddedDockerBundle | LegacyDockerBundle> {
  const embedded = await embeddedLayout(store);
  if (embedded) return new EmbeddedDockerBundle(path, store, embedded);
  const { scan, members } = await synthesize(store);
  return new LegacyDockerBundle(path, store, scan, members);
}
