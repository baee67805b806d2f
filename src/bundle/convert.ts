// `ocisave convert`: a bundle of any format to any output format, offline. The bundle is read
// as a source (model.ts) and written by the linkers save uses (src/link/), so a converted
// output is the one save would write for the same images. Nothing here opens a connection.
import { mkdir, rm } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { linkOutput, type LinkResult, type OutputFormat } from '../link/index.js';
import { removeStaleStaging, stagingPath } from '../link/files.js';
import type { PlatformSelector } from '../ref/platform.js';
import { openBundle } from './index.js';
import { BundleBlobs, bundleGraph } from './model.js';
import { BundleError, type BundleFormat } from './types.js';

export interface ConvertOptions {
  /** The bundle to read: registry layout, OCI layout directory or archive, docker-save tar. */
  bundle: string;
  out: string;
  format: OutputFormat;
  /** Children of multi-platform indexes to keep (default: all the bundle holds). */
  platforms?: PlatformSelector;
  /** As save's: docker format with uncompressed layers; oci formats keeping docker-typed manifests; naming the index with one platform. */
  uncompressed?: boolean;
  preserveDigests?: boolean;
  keepIndex?: boolean;
  onWarning?: (message: string) => void;
}

export interface ConvertResult extends LinkResult {
  bundle: string;
  from: BundleFormat;
  format: OutputFormat;
  /** References written, as the output names them. */
  images: string[];
  seconds: number;
}

/** OUT must be neither the bundle, nor inside it, nor hold it: the output replaces what is at OUT. */
function checkPaths(bundle: string, out: string): void {
  const a = resolve(bundle);
  const b = resolve(out);
  const inside = (outer: string, inner: string) => {
    const rel = relative(outer, inner);
    return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
  };
  if (inside(a, b) || inside(b, a)) throw new BundleError(`-o ${out}: the output must lie outside the bundle ${bundle} (and not hold it)`);
}

export async function convert(opts: ConvertOptions): Promise<ConvertResult> {
  const started = Date.now();
  checkPaths(opts.bundle, opts.out);
  const bundle = await openBundle(opts.bundle);
  // Blobs are staged beside OUT (same filesystem, so directory outputs hard-link them); a
  // convert killed before its cleanup leaves a name the next convert to OUT removes.
  const stageName = join(dirname(opts.out), `${basename(opts.out)}.blobs`);
  const stageDir = stagingPath(stageName);
  try {
    if (bundle.problems.length) {
      const first = bundle.problems[0]!.message;
      throw new BundleError(`${opts.bundle}: ${bundle.problems.length} problem(s) found while reading it (first: ${first}); ocisave verify lists them`);
    }
    const graph = await bundleGraph(bundle, { platforms: opts.platforms });
    if (graph.images.length === 0) throw new BundleError(`${opts.bundle} holds no image to convert`);
    await mkdir(dirname(opts.out), { recursive: true });
    await removeStaleStaging(stageName);
    const blobs = await BundleBlobs.open(bundle, graph, stageDir);
    const platforms = opts.platforms ?? 'all';
    const result = await linkOutput(opts.format, {
      graph,
      cache: blobs,
      out: opts.out,
      uncompressed: opts.uncompressed,
      preserveDigests: opts.preserveDigests,
      onePlatform: !opts.keepIndex && platforms !== 'all' && platforms.length === 1,
      onWarning: opts.onWarning,
    });
    return { ...result, bundle: opts.bundle, from: bundle.format, format: opts.format, images: graph.images.map((i) => i.input), seconds: (Date.now() - started) / 1000 };
  } finally {
    await rm(stageDir, { recursive: true, force: true });
    await bundle.close();
  }
}
