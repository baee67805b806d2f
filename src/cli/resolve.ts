// `ocisave resolve`: the dry run. Every reference → its digest, platforms, size and how much of it
// the cache lacks; nothing is downloaded but manifests. `--lock FILE` pins what was resolved so a
// later `ocisave save --lock FILE` saves exactly that, wherever the tags have moved since.
import { Command } from 'commander';
import type { ResolveReport } from '../api/resolve.js';
import type { OcisaveEvent } from '../api/events.js';
import { describeFailure } from '../engine/errors.js';
import { addCredentialOptions, addMirrorOption, addNetworkOptions, addLimitOptions, fetchRequestFrom, platformArg, type CommonFlags } from './options.js';
import { createRenderer, formatBytes, progressMode } from './render.js';
import { addReferenceInputs, addContextOptions, addTagSetOptions, inputOptionsFrom, type InputFlags } from './inputs.js';
import { addShardOption } from './shard.js';
import type { Shard } from '../ref/shard.js';

interface ResolveFlags extends CommonFlags, InputFlags {
  file?: string[];
  lock?: string;
  offline?: boolean;
  withSignatures?: boolean;
  shard?: Shard;
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
    const { resolve } = await import('../api/resolve.js');
    const mode = progressMode(!!flags.json, !!flags.quiet);
    const render = createRenderer(mode);
    // Failures are printed once, with the results; warnings (mirrors, signatures) as they come.
    const onEvent = (e: OcisaveEvent) => (e.type === 'warning' || (mode === 'json' && e.type !== 'progress') ? render(e) : undefined);
    const report = await resolve({
      ...(await fetchRequestFrom(flags, onEvent)),
      ...inputOptionsFrom(args, flags),
      shard: flags.shard,
      lock: flags.lock,
      offline: flags.offline,
      withSignatures: flags.withSignatures,
    });
    if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else process.stdout.write(reportText(report));
    for (const f of report.failures) process.stderr.write(`ocisave: error: ${describeFailure(f)}\n`);
    if (flags.lock && !report.lock) process.stderr.write(`ocisave: error: lock file ${flags.lock} not written: ${report.failures.length} reference(s) did not resolve\n`);
    if (report.failures.length) process.exitCode = 1;
  });
  return cmd;
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
