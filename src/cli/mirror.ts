// `ocisave mirror SOURCES... | -f FILE --to REGISTRY[/prefix]`: registry to registry through the
// shared cache, each image pushed as soon as its blobs are cached; --dry-run prints the plan.
import { Command } from 'commander';
import type { OcisaveEvent } from '../api/events.js';
import type { MirrorRequest } from '../api/mirror.js';
import type { MirrorSummary } from '../mirror/mirror.js';
import type { MirrorPlan } from '../mirror/plan.js';
import type { Shard } from '../ref/shard.js';
import { addReferenceInputs, addContextOptions, addTagSetOptions, inputOptionsFrom, type InputFlags } from './inputs.js';
import { addFetchOptions, addMirrorOption, fetchRequestFrom, positiveInt, positiveSeconds, type CommonFlags } from './options.js';
import { parseBytes } from './push.js';
import { createRenderer, formatBytes, progressMode } from './render.js';
import { interruptSignal } from './save.js';
import { addShardOption } from './shard.js';

interface MirrorFlags extends CommonFlags, InputFlags {
  file?: string[];
  lock?: string[];
  to: string;
  dryRun?: boolean;
  scoped?: boolean;
  keepGoing?: boolean;
  withSignatures?: boolean;
  pushJobs?: number;
  chunkSize?: number;
  retryBudget?: number;
  shard?: Shard;
}

export function mirrorText(s: MirrorSummary): string {
  const lines = [
    `mirrored ${s.images} images to ${s.target} in ${s.seconds.toFixed(1)} s: ` +
      `${s.blobs.transferred} blobs transferred (${s.blobs.uploaded} uploaded, ${formatBytes(s.blobs.uploadedBytes)}; ${s.blobs.mounted} mounted), ${s.blobs.present} already there; ` +
      `${s.manifests.pushed} manifests pushed (${s.manifests.present} already there); ` +
      `tags: ${s.tags.new} new, ${s.tags.moved} moved, ${s.tags.unchanged} unchanged; ` +
      `source: ${s.source.downloaded.blobs} blobs downloaded (${formatBytes(s.source.downloaded.bytes)}), ${s.source.reused.blobs} from the cache`,
  ];
  for (const m of s.moved) lines.push(`moved ${m.reference}: ${m.from} → ${m.to}`);
  for (const r of s.retagged) lines.push(`note: ${r.reference} names platform manifest ${r.manifest}: the registry refused index ${r.index}, of which only one platform was selected`);
  for (const f of s.failures) lines.push(`failed ${f.input}: ${f.error}`);
  return lines.join('\n');
}

export function planText(p: MirrorPlan): string {
  const lines = [`plan: mirror ${p.images.length} images to ${p.target}: ${p.blobs.missing} blobs to send (${formatBytes(p.blobs.missingBytes)}); nothing was sent (--dry-run)`];
  for (const i of p.images) {
    const tag = i.tag === 'moved' ? `moved from ${i.from}` : i.tag;
    lines.push(
      `  ${i.target} (${tag}): ${i.manifests.missing}/${i.manifests.total} manifests, ${i.blobs.missing}/${i.blobs.total} blobs (${formatBytes(i.blobs.missingBytes)}) to send`,
    );
  }
  for (const f of p.failures) lines.push(`failed ${f.input}: ${f.error}`);
  return lines.join('\n');
}

export function mirrorCommand(): Command {
  const cmd = new Command('mirror')
    .description('copy images and artifacts from registries into a registry, digests unchanged, through the shared cache')
    .requiredOption('--to <registry>', 'HOST[:PORT][/prefix]: target registry, optionally a repository prefix')
    .option('--dry-run', 'resolve and compare with the target (HEAD only), print the plan, send nothing')
    .option('--scoped', "keep each source host in the target repository path (HOST/repo; a port's \":\" as \"_\")")
    .option('--keep-going', 'mirror what can be mirrored when some images fail (exit status still non-zero)')
    .option('--lock <file>', 'mirror exactly the digests of a lock file; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--with-signatures', 'also mirror cosign signatures, attestations and SBOMs, and OCI referrers')
    .option('--push-jobs <n>', 'blob uploads in flight at once (default 4)', positiveInt)
    .option('--chunk-size <size>', 'bytes per upload chunk (PATCH), e.g. 16MiB', parseBytes)
    .option('--retry-budget <s>', 'pushes give up once failed attempts and the waits before retries add up to this many seconds (default 300)', positiveSeconds);
  addReferenceInputs(cmd);
  addFetchOptions(cmd);
  addMirrorOption(cmd);
  addContextOptions(cmd);
  addTagSetOptions(cmd);
  addShardOption(cmd);
  cmd.action(async (args: string[], flags: MirrorFlags) => {
    const { mirror, planMirror } = await import('../api/mirror.js');
    const mode = progressMode(!!flags.json, !!flags.quiet);
    const render = createRenderer(mode);
    const onEvent = (e: OcisaveEvent) => {
      if (e.type === 'blob' || e.type === 'manifest' || e.type === 'tag') {
        if (mode === 'json') render(e);
        else if (mode !== 'quiet' && e.type === 'tag') process.stderr.write(`pushed ${e.reference} (${e.digest})\n`);
      } else if (!(e.type === 'resolve-failed' && mode !== 'json')) render(e);
    };
    const request: MirrorRequest = {
      ...(await fetchRequestFrom(flags, onEvent)),
      ...inputOptionsFrom(args, flags),
      lock: flags.lock,
      shard: flags.shard,
      to: flags.to,
      scoped: flags.scoped,
      keepGoing: flags.keepGoing,
      withSignatures: flags.withSignatures,
      pushJobs: flags.pushJobs,
      chunkSize: flags.chunkSize,
      retryBudget: flags.retryBudget,
    };
    if (flags.dryRun) {
      const plan = await planMirror(request);
      process.stdout.write(flags.json ? `${JSON.stringify(plan)}\n` : `${planText(plan)}\n`);
      if (plan.failures.length) process.exitCode = 1;
      return;
    }
    const summary = await mirror({ ...request, signal: interruptSignal() });
    if (summary.shardEmpty) {
      const e = summary.shardEmpty;
      process.stderr.write(`ocisave: shard ${e.index}/${e.count} holds none of the ${e.inputs} inputs: nothing to mirror\n`);
      return;
    }
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${mirrorText(summary)}\n`);
    if (summary.failures.length) process.exitCode = 1;
  });
  return cmd;
}
