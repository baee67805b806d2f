// What a linker reads blobs from: the cache when saving, a bundle when converting (src/bundle/model.ts).
// Both answer these few calls, so every output format is written by one linker whatever the source.
import type { FileSource } from './files.js';

export interface LinkBlobs {
  /** Where the blobs come from, for messages. */
  readonly dir: string;
  /** Whether the source holds the blob complete (linking never fetches). */
  hasBlob(digest: string): boolean;
  /** A small blob (a config) whole; refuses more than `maxBytes`. */
  readBlob(digest: string, maxBytes: number): Promise<Buffer>;
  /** The blob as a file: its path (for hard links) and a checked opener. */
  blobSource(digest: string): FileSource;
  /** A unique temp path on the source's filesystem (docker format: layers decompressed there). */
  tempPath(label: string): string;
}
