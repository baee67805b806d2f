// One entry point for every output format; each format lives in its own module.
import type { LinkBlobs } from './blobs.js';
import type { ImageGraph } from '../resolve/graph.js';
import { UsageError } from '../util/errors.js';

export const OUTPUT_FORMATS = ['registry', 'docker', 'oci', 'oci-archive'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface LinkOptions {
  graph: ImageGraph;
  /** Where blobs are read: the cache (save), or a bundle (convert). */
  cache: LinkBlobs;
  /** Output path: a directory (registry, oci) or a file (docker, oci-archive). */
  out: string;
  /** docker format: write uncompressed layer tars, as `docker save` does. */
  uncompressed?: boolean;
  /** registry format: a base bundle (registry layout); blobs and manifests it holds are not written (a delta bundle). */
  since?: string;
  /**
   * oci, oci-archive: keep docker-typed manifests and lists byte-for-byte. By default they are
   * converted to OCI media types (as skopeo copy does), which skopeo oci: lookups and umoci require.
   */
  preserveDigests?: boolean;
  /** registry format: each repository under its source host (`HOST/repo`, a port's ':' as '_'), as skopeo sync --scoped. */
  scoped?: boolean;
  /**
   * oci, oci-archive: an index with one selected platform is named by that platform's manifest, as
   * crane pull --platform writes it, so umoci and skopeo oci:DIR:NAME read it. Otherwise (and with
   * save's --keep-index) the index is named, with only the selected children present.
   */
  onePlatform?: boolean;
  /** Called, and awaited, before each blob or manifest goes into the output (progress; tests pause a build here). */
  onBlob?: (blob: { digest: string; size: number }) => void | Promise<void>;
  /** Something was left out or changed (e.g. an artifact skipped by the docker format). */
  onWarning?: (message: string) => void;
}

export interface LinkResult {
  path: string;
  /** Blob files hard-linked from the cache, copied, or streamed into an archive. */
  linked: number;
  copied: number;
  written: number;
  /** Also given to onWarning as they happen. */
  warnings?: string[];
}

export async function linkOutput(format: OutputFormat, opts: LinkOptions): Promise<LinkResult> {
  if (opts.since && format !== 'registry') throw new UsageError('--since works with --format registry');
  // Each format's module is loaded when asked for: the archive ones bring tar-stream.
  switch (format) {
    case 'registry':
      return (await import('./registry.js')).linkRegistryLayout(opts);
    case 'docker':
      return (await import('./docker-archive.js')).linkDockerArchive(opts);
    case 'oci':
      return (await import('./oci-layout.js')).linkOciLayout(opts);
    case 'oci-archive':
      return (await import('./oci-layout.js')).linkOciArchive(opts);
  }
}
