// Which resolved images have every blob they need in the cache, told as soon as each one has:
// the linker can write an image while the blobs of others still download.
import { blobsOf, leafManifests, type ResolvedImage } from '../resolve/graph.js';

export class ImageReadiness {
  private readonly ready = new Set<string>();
  /** Images waiting for a blob, by its digest. */
  private readonly waiting = new Map<string, ResolvedImage[]>();
  /** How many of its blobs each waiting image still lacks. */
  private readonly missing = new Map<ResolvedImage, number>();

  constructor(private readonly onReady: (image: ResolvedImage) => void) {}

  addImage(image: ResolvedImage): void {
    const lacking = new Set(leafManifests(image.root).flatMap(blobsOf).map((d) => d.digest).filter((d) => !this.ready.has(d)));
    if (lacking.size === 0) return this.onReady(image);
    this.missing.set(image, lacking.size);
    for (const digest of lacking) {
      const list = this.waiting.get(digest);
      if (list) list.push(image);
      else this.waiting.set(digest, [image]);
    }
  }

  /** The blob is verified in the cache. */
  blobReady(digest: string): void {
    if (this.ready.has(digest)) return;
    this.ready.add(digest);
    for (const image of this.waiting.get(digest) ?? []) {
      const left = this.missing.get(image)! - 1;
      if (left > 0) {
        this.missing.set(image, left);
        continue;
      }
      this.missing.delete(image);
      this.onReady(image);
    }
    this.waiting.delete(digest);
  }
}
