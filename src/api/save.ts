// save(): references and input files in, one output out; the summary back, versioned.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { save as saveImages, type Summary } from '../engine/pipeline.js';
import type { OutputFormat } from '../link/index.js';
import { REGISTRY_ROOT } from '../link/registry.js';
import { stamp } from './events.js';
import { gatherInputs, type InputOptions } from './inputs.js';
import { credentialsOf, fetchOptionsOf, type FetchRequest } from './options.js';
import { savePlatforms } from './platforms.js';
import { SCHEMAS, versioned } from './schema.js';
import { UsageError } from '../util/errors.js';

export interface SaveRequest extends FetchRequest, InputOptions {
  /** Where to write the output (the CLI's -o). */
  out: string;
  /** Default 'registry'. */
  format?: OutputFormat;
  uncompressed?: boolean;
  preserveDigests?: boolean;
  keepIndex?: boolean;
  scoped?: boolean;
  /** registry format: a delta against this earlier registry layout. */
  since?: string;
}

export type SaveResult = { schema: typeof SCHEMAS.save } & Summary & {
  /** Set when --shard left this process no input: nothing was fetched. */
  shardEmpty?: { index: number; count: number; inputs: number; wroteEmptyLayout: boolean };
};

export const DEFAULT_FORMAT: OutputFormat = 'registry';

function checkFormatOptions(r: SaveRequest, format: OutputFormat): void {
  if (r.since && format !== 'registry') throw new UsageError('--since works with --format registry');
  if (r.scoped && format !== 'registry') throw new UsageError('--scoped works with --format registry (the other formats name images by their full reference)');
  if (r.keepIndex && format !== 'oci' && format !== 'oci-archive') throw new UsageError('--keep-index works with --format oci and oci-archive');
}

/** A shard with none of the inputs: an empty layout still, so a script can merge every shard's output without checking which exist. */
async function emptyShard(r: SaveRequest, format: OutputFormat, index: number, count: number, inputs: number): Promise<SaveResult> {
  const wroteEmptyLayout = format === 'registry' && !existsSync(r.out);
  if (wroteEmptyLayout) for (const dir of ['blobs', 'repositories']) await mkdir(join(r.out, REGISTRY_ROOT, dir), { recursive: true });
  const none = { blobs: 0, bytes: 0 };
  const summary: Summary = { images: 0, saved: [], manifests: 0, ...none, downloaded: none, reused: none, resumedBytes: 0, failures: [], seconds: 0, peakRssBytes: 0 };
  return { ...versioned(SCHEMAS.save, summary), shardEmpty: { index, count, inputs, wroteEmptyLayout } };
}

/** Saves every input into `out`; rejects with SaveError (nothing written) unless keepGoing, InterruptedError on abort. */
export async function save(r: SaveRequest): Promise<SaveResult> {
  const format = r.format ?? DEFAULT_FORMAT;
  const g = await gatherInputs(r);
  if (g.total === 0) throw new UsageError('nothing to save: give references as arguments, -f FILE or --lock FILE');
  if (g.shard && g.refs.length === 0 && g.tagSets.length === 0) return emptyShard(r, format, g.shard.index, g.shard.count, g.total);
  checkFormatOptions(r, format);
  for (const message of g.collected.warnings) r.onEvent?.(stamp({ type: 'warning', message }));
  const credentials = credentialsOf(r, g.registries, g.collected.credentials);
  const summary = await saveImages(g.refs, {
    ...fetchOptionsOf(r, savePlatforms(r.platforms, format, g.lockPlatform), credentials),
    format,
    out: r.out,
    uncompressed: r.uncompressed,
    since: r.since,
    preserveDigests: r.preserveDigests,
    scoped: r.scoped,
    keepIndex: r.keepIndex,
    tagSets: g.tagSets,
    hostOptions: g.collected.hostOptions,
  });
  return versioned(SCHEMAS.save, summary);
}
