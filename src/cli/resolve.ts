// `ocisave resolve`: the dry run. Every reference → its digest, platforms, size and how much of it
// the cache lacks; nothing is downloaded but manifests. `--lock FILE` pins what was resolved so a
// later `ocisave save --lock FILE` saves exactly that, wherever the tags have moved since.
import { Command } from 'commander';
import { EngineEvents } from '../util/events.js';
import { describeFailure, resolveGraph } from '../engine/pipeline.js';
import { formatReference } from '../ref/reference.js';
import { formatPlatform } from '../ref/platform.js';
import { blobsOf, leafManifests, walkNodes, type Failure, type ImageGraph } from '../resolve/graph.js';
import { lockFromGraph, writeLockFile } from '../resolve/lockfile.js';
import type { Cache } from '../cache/cache.js';
import { addCredentialOptions, addMirrorOption, addNetworkOptions, credentialsFrom, networkFrom, netLimitsFrom, addLimitOptions, platformArg, platformsFrom, type CommonFlags } from './options.js';
import { createRenderer, formatBytes, progressMode } from './render.js';
import { registriesOf } from './save.js';
import { addReferenceInputs, addContextOptions, addTagSetOptions, collectInputs, type InputFlags } from './inputs.js';
import { addShardOption, shardInputs } from './shard.js';
import type { Shard } from '../ref/shard.js';

interface ResolveFlags extends CommonFlags, InputFlags {
  file?: string[];
  lock?: string;
  offline?: boolean;
  withSignatures?: boolean;
  shard?: Shard;
}

export interface ResolvedRow {
  input: string;
  /** `registry/repository@digest` */
  reference: string;
  tag?: string;
  digest: string;
  mediaType: string;
  platforms: string[];
  manifests: number;
  blobs: number;
  bytes: number;
  /** Bytes of this image's blobs that are not complete in the cache. */
  missingBytes: number;
}

export interface ResolveReport {
  images: ResolvedRow[];
  total: { images: number; manifests: number; blobs: number; bytes: number; missingBlobs: number; missingBytes: number };
  failures: Failure[];
  lock?: string;
}

export function resolveCommand(): Command {
  const cmd = new Command('resolve')
    .description('dry run: resolve references to digests and sizes without downloading; --lock pins them for a later save')
    .option('--lock <file>', 'write a lock file: each input pinned to registry/repository@digest (save it with ocisave save --lock FILE)')
    .option('--platform <list>', 'platforms to keep from multi-arch images: os/arch[/variant],… or all (default: all)', platformArg)
    .option('--with-signatures', 'also resolve cosign signatures, attestations and SBOMs, and OCI referrers')
    .option('--cache <dir>', 'blob cache to compare with (default: $OCISAVE_CACHE or ~/.cache/ocisave)')
    .option('--offline', 'use only the cache: tags as an earlier run resolved them')
    .option('--json', 'the result as JSON on stdout (warnings as JSON lines on stderr)')
    .option('-q, --quiet', 'no warnings on stderr');
  addReferenceInputs(cmd);
  addNetworkOptions(cmd);
  addCredentialOptions(cmd);
  addMirrorOption(cmd);
  addContextOptions(cmd);
  addTagSetOptions(cmd);
  addShardOption(cmd);
  addLimitOptions(cmd, 'per manifest or token request');
  cmd.action(async (args: string[], flags: ResolveFlags) => {
    const collected = await collectInputs(args, flags.file, flags);
    if (collected.refs.length === 0 && collected.tagSets.length === 0) throw new Error('nothing to resolve: give references as arguments or -f FILE');
    const { refs: inputs, tagSets } = shardInputs(flags.shard, collected.refs, collected.tagSets);
    const mode = progressMode(!!flags.json, !!flags.quiet);
    const render = createRenderer(mode);
    for (const message of collected.warnings) render({ type: 'warning', message });
    // Failures are printed once, with the results; warnings (mirrors, signatures) as they come.
    const events = new EngineEvents().on((e) => (e.type === 'warning' || (mode === 'json' && e.type !== 'progress') ? render(e) : undefined));
    const platforms = platformsFrom(flags, 'all');
    const resolved = await resolveGraph(inputs, {
      platforms,
      cacheDir: flags.cache,
      plainHttp: flags.plainHttp,
      ...networkFrom(flags),
      limits: netLimitsFrom(flags),
      offline: flags.offline,
      keepGoing: true,
      mirrors: flags.registryMirror,
      withSignatures: flags.withSignatures,
      tagSets,
      hostOptions: collected.hostOptions,
      credentials: await credentialsFrom(flags, registriesOf([...inputs, ...tagSets.map((t) => t.repository)]), collected.credentials),
      events,
    });
    let report: ResolveReport;
    try {
      report = reportOf(resolved.graph, resolved.cache);
      // A lock that silently lacks an image would make the later save "reproducibly" incomplete.
      if (flags.lock && report.failures.length === 0) {
        await writeLockFile(flags.lock, lockFromGraph(resolved.graph, platforms));
        report.lock = flags.lock;
      }
    } finally {
      await resolved.close();
    }
    if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else process.stdout.write(reportText(report));
    for (const f of report.failures) process.stderr.write(`ocisave: error: ${describeFailure(f)}\n`);
    if (flags.lock && !report.lock) process.stderr.write(`ocisave: error: lock file ${flags.lock} not written: ${report.failures.length} reference(s) did not resolve\n`);
    if (report.failures.length) process.exitCode = 1;
  });
  return cmd;
}

export function reportOf(graph: ImageGraph, cache: Cache): ResolveReport {
  const missing = (digest: string) => !cache.hasBlob(digest);
  const images = graph.images.map((image): ResolvedRow => {
    const blobs = new Map<string, number>();
    for (const m of leafManifests(image.root)) for (const d of blobsOf(m)) blobs.set(d.digest, d.size);
    let bytes = 0;
    let missingBytes = 0;
    for (const [digest, size] of blobs) {
      bytes += size;
      if (missing(digest)) missingBytes += size;
    }
    return {
      input: image.input,
      reference: formatReference({ registry: image.ref.registry, repository: image.ref.repository, digest: image.root.digest }),
      ...(image.ref.tag ? { tag: image.ref.tag } : {}),
      digest: image.root.digest,
      mediaType: image.root.mediaType,
      platforms: leafManifests(image.root).map((m) => (m.platform ? formatPlatform(m.platform) : 'any')),
      manifests: [...walkNodes(image.root)].length,
      blobs: blobs.size,
      bytes,
      missingBytes,
    };
  });
  const total = { images: images.length, manifests: 0, blobs: graph.blobs.size, bytes: 0, missingBlobs: 0, missingBytes: 0 };
  for (const row of images) total.manifests += row.manifests;
  for (const need of graph.blobs.values()) {
    total.bytes += need.size;
    if (missing(need.digest)) {
      total.missingBlobs++;
      total.missingBytes += need.size;
    }
  }
  return { images, total, failures: graph.failures };
}

export function reportText(r: ResolveReport): string {
  const lines: string[] = [];
  for (const row of r.images) {
    lines.push(`${row.input} → ${row.reference}`);
    lines.push(`    ${row.platforms.join(', ')}; ${formatBytes(row.bytes)}${row.missingBytes ? `, ${formatBytes(row.missingBytes)} not in the cache` : ', all in the cache'}`);
  }
  const t = r.total;
  lines.push(
    `${t.images} image${t.images === 1 ? '' : 's'}, ${t.manifests} manifests, ${t.blobs} unique blobs (${formatBytes(t.bytes)}); ` +
      `to download: ${t.missingBlobs} blobs (${formatBytes(t.missingBytes)})`,
  );
  if (r.lock) lines.push(`lock file written: ${r.lock}`);
  return `${lines.join('\n')}\n`;
}
