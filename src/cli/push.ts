// `ocisave push BUNDLE --to HOST[:PORT][/prefix]`: load a saved bundle (registry layout, OCI
// layout or archive, docker-save tar) into a registry with the same digests.
import { Command, InvalidArgumentError } from 'commander';
import type { PushSummary } from '../push/push.js';
import type { OcisaveEvent } from '../api/events.js';
import { addCredentialOptions, addLimitOptions, addNetworkOptions, registryOptionsFrom, positiveInt, positiveSeconds, type CommonFlags } from './options.js';
import { formatBytes } from './render.js';

interface PushFlags extends CommonFlags {
  to: string;
  chunkSize?: number;
  repository?: string[];
  retryBudget?: number;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3 };

/** "16MiB", "512k", "1048576" → bytes. */
export function parseBytes(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new InvalidArgumentError('a size such as 16MiB, 512KiB or 1048576');
  const n = Math.floor(Number(m[1]) * unit);
  if (n < 1) throw new InvalidArgumentError('must be at least 1 byte');
  return n;
}

function pushText(s: PushSummary): string {
  const lines = [
    `pushed ${s.format} bundle ${s.bundle} to ${s.target} in ${s.seconds.toFixed(1)} s: ` +
      `${s.repositories} repositories, ${s.tags.length} tags, ${s.manifests.pushed} manifests pushed (${s.manifests.present} already there), ` +
      `${s.blobs.uploaded} blobs uploaded (${formatBytes(s.blobs.uploadedBytes)}), ${s.blobs.mounted} mounted, ${s.blobs.present} already there`,
  ];
  for (const r of s.retagged) lines.push(`note: ${r.reference} names platform manifest ${r.manifest}: the registry refused index ${r.index}, of which the bundle holds one platform`);
  for (const f of s.failures) lines.push(`failed ${f.repository}: ${f.error}`);
  return lines.join('\n');
}

export function pushCommand(): Command {
  const cmd = new Command('push')
    .description('push a saved bundle (registry layout, OCI layout/archive, docker-save tar) to a registry, digests unchanged')
    .argument('<bundle>', 'bundle directory or archive')
    .requiredOption('--to <registry>', 'HOST[:PORT][/prefix]: target registry, optionally a repository prefix')
    .option('--repository <name>', 'push only this bundle repository; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('-j, --jobs <n>', 'blob uploads in flight at once (default 4)', positiveInt)
    .option('--chunk-size <size>', 'bytes per upload chunk (PATCH), e.g. 16MiB', parseBytes)
    .option('--json', 'events as JSON lines on stderr, the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output')
    .option('--retry-budget <s>', 'give up once failed attempts and the waits before retries add up to this many seconds (default 300)', positiveSeconds);
  addNetworkOptions(cmd, 'talk plain HTTP to the target, without trying HTTPS first');
  addLimitOptions(cmd, 'per request and per upload chunk');
  addCredentialOptions(cmd, 'registry user for the target');
  return cmd.action(async (bundle: string, flags: PushFlags) => {
    const { push } = await import('../api/push.js');
    const onEvent = (e: OcisaveEvent) => {
      if (flags.json) process.stderr.write(`${JSON.stringify(e)}\n`);
      else if (e.type === 'warning') process.stderr.write(`warning: ${e.message}\n`);
      else if (!flags.quiet && e.type === 'tag') process.stderr.write(`pushed ${e.reference} (${e.digest})\n`);
    };
    const summary = await push({
      ...(await registryOptionsFrom(flags)),
      bundle,
      to: flags.to,
      repository: flags.repository,
      jobs: flags.jobs,
      chunkSize: flags.chunkSize,
      retryBudget: flags.retryBudget,
      onEvent,
    });
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${pushText(summary)}\n`);
    if (summary.failures.length) process.exitCode = 1;
  });
}
