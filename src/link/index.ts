// One entry point for every output format; each format lives in its own module.
import type { Cache } from '../cache/cache.js';
import type { ImageGraph } from '../resolve/graph.js';
import { linkRegistryLayout } from './registry.js';

export const OUTPUT_FORMATS = ['registry'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface LinkOptions {
  graph: ImageGraph;
  cache: Cache;
  /** Output path: a directory (registry, oci) or a file (docker, oci-archive). */
  out: string;
  /** docker format: write uncompressed layer tars, as `docker save` does. */
  uncompressed?: boolean;
}

export interface LinkResult {
  path: string;
  /** Blob files hard-linked from the cache, copied, or streamed into an archive. */
  linked: number;
  copied: number;
  written: number;
}

export async function linkOutput(format: OutputFormat, opts: LinkOptions): Promise<LinkResult> {
  switch (format) {
    case 'registry':
      return linkRegistryLayout(opts);
  }
}
