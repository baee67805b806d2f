// Resolved images whose blobs are in the cache, seen as a Bundle: the source side of `mirror`, so
// the push machinery (HEAD, mounts, chunked uploads, manifests children first, tags last) sends
// them exactly as it sends a saved bundle. Manifest bytes are the ones fetched; blob bytes stream
// from the cache's verified files, through descriptors the cache checks (Cache.openBlob), and
// push hashes what it sends as it does for any bundle.
import type { Readable } from 'node:stream';
import type { Cache } from '../cache/cache.js';
import { streamOpened } from '../fs/contained.js';
import type { Bundle, BundleRepository, StoredManifest } from '../bundle/types.js';
import { blobsOf, leafManifests, walkNodes, type ResolvedImage } from '../resolve/graph.js';

export class ImageBundle implements Bundle {
  readonly format = 'registry' as const;
  /** Unused by mirror (it pushes what add() returns); the Bundle interface wants it. */
  readonly repositories = new Map<string, BundleRepository>();
  private readonly manifests = new Map<string, StoredManifest>();

  constructor(
    private readonly cache: Cache,
    readonly path: string,
  ) {}

  /**
   * Adds an image; returns a bundle repository named `repository` that holds this image alone (its
   * manifests, blobs and tag), so pushing it sends this image and nothing pushed before.
   */
  add(image: ResolvedImage, repository: string): BundleRepository {
    const repo: BundleRepository = { name: repository, tags: new Map(), manifests: new Set(), blobs: new Set() };
    for (const node of walkNodes(image.root)) {
      this.manifests.set(node.digest, { digest: node.digest, mediaType: node.mediaType, bytes: node.bytes });
      repo.manifests.add(node.digest);
    }
    for (const d of leafManifests(image.root).flatMap(blobsOf)) repo.blobs.add(d.digest);
    if (image.ref.tag) repo.tags.set(image.ref.tag, image.root.digest);
    return repo;
  }

  async blobSize(digest: string): Promise<number | undefined> {
    return this.cache.blobRecord(digest)?.size;
  }

  openBlob(digest: string, start?: number, end?: number): Readable {
    return streamOpened(() => this.cache.openBlob(digest), start, end);
  }

  async manifest(digest: string): Promise<StoredManifest | undefined> {
    return this.manifests.get(digest);
  }

  async close(): Promise<void> {}
}
