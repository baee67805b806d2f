// `ocisave save`: references and input files in, one output out.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { REGISTRY_ROOT } from '../link/registry.js';
import { EngineEvents } from '../util/events.js';
import { save } from '../engine/pipeline.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../link/index.js';
import { parseReference } from '../ref/reference.js';
import { addFetchOptions, networkFrom, netLimitsFrom, addMirrorOption, credentialsFrom, defaultPlatform, platformsFrom, type CommonFlags } from './options.js';
import { lockReferences, readLockFile } from '../resolve/lockfile.js';
import { addReferenceInputs, addContextOptions, addTagSetOptions, collectInputs, type InputFlags } from './inputs.js';
import { parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { createRenderer, progressMode, summaryText } from './render.js';
import { addShardOption, shardInputs } from './shard.js';
import type { Shard } from '../ref/shard.js';

interface SaveFlags extends CommonFlags, InputFlags {
  scoped?: boolean;
  keepIndex?: boolean;
  file?: string[];
  output: string;
  format: OutputFormat;
  keepGoing?: boolean;
  uncompressed?: boolean;
  offline?: boolean;
  lock?: string[];
  withSignatures?: boolean;
  since?: string;
  preserveDigests?: boolean;
  shard?: Shard;
}

/** The pinned references of --lock files, and the platforms each was resolved with. */
export async function collectLocks(files: string[] = []): Promise<{ refs: string[]; platforms: string[] }> {
  const refs: string[] = [];
  const platforms: string[] = [];
  for (const file of files) {
    const lock = await readLockFile(file);
    if (!lock) throw new Error(`${file} is not an ocisave lock file (write one with: ocisave resolve … --lock ${file})`);
    refs.push(...lockReferences(lock));
    platforms.push(lock.platforms);
  }
  return { refs, platforms };
}

/** The --platform that lock files agree on, as the default for a save from them. */
export function lockPlatforms(platforms: string[]): PlatformSelector | undefined {
  const distinct = new Set(platforms);
  return distinct.size === 1 ? parsePlatformSelector([...distinct][0]!) : undefined;
}

/** Registries named by the inputs (for --username), ignoring inputs that do not parse. */
export function registriesOf(inputs: string[]): string[] {
  const out = new Set<string>();
  for (const input of inputs) {
    try {
      out.add(parseReference(input).registry);
    } catch {
      // reported by save itself, with the reference named
    }
  }
  return [...out];
}

/** First Ctrl-C: stop cleanly (downloads checkpoint); a second one exits at once. */
export function interruptSignal(): AbortSignal {
  const ctl = new AbortController();
  const onSignal = () => {
    if (ctl.signal.aborted) process.exit(130);
    process.stderr.write('\ninterrupting: checkpointing downloads (Ctrl-C again to quit at once)\n');
    ctl.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return ctl.signal;
}

export function saveCommand(): Command {
  const cmd = new Command('save')
    .description('save images and artifacts (and everything they reference) from registries to disk')
    .requiredOption('-o, --output <path>', 'where to write the output')
    .addOption(new Option('--format <format>', 'output format').choices([...OUTPUT_FORMATS]).default('registry'))
    .option('--uncompressed', 'docker format: write uncompressed layers, as docker save does')
    .option('--preserve-digests', 'oci formats: keep docker-typed manifests byte for byte (skopeo 1.9 and umoci cannot read them by name)')
    .option('--keep-index', "oci formats: with one --platform, name the image's index (only that platform inside) instead of the platform's manifest")
    .option('--scoped', 'registry format: keep each source host in the repository path (HOST/repo; a port\'s ":" as "_"), as skopeo sync --scoped')
    .option('--since <bundle>', 'registry format: a delta bundle, leaving out blobs and manifests this earlier bundle (registry layout) holds')
    .option('--keep-going', 'save what can be saved when some images fail (exit status still non-zero)')
    .option('--offline', 'use only the cache: tags as an earlier run resolved them')
    .option('--lock <file>', 'save exactly the digests of a lock file (ocisave resolve --lock); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--with-signatures', 'also save cosign signatures, attestations and SBOMs, and OCI referrers, of every saved manifest');
  addReferenceInputs(cmd);
  addFetchOptions(cmd);
  addMirrorOption(cmd);
  addContextOptions(cmd);
  addTagSetOptions(cmd);
  addShardOption(cmd);
  cmd.action(async (args: string[], flags: SaveFlags) => {
    const locked = await collectLocks(flags.lock);
    const collected = await collectInputs(args, flags.file, flags);
    const all = [...new Set([...collected.refs, ...locked.refs])];
    if (all.length === 0 && collected.tagSets.length === 0) throw new Error('nothing to save: give references as arguments, -f FILE or --lock FILE');
    const { refs: inputs, tagSets } = shardInputs(flags.shard, all, collected.tagSets);
    if (inputs.length === 0 && tagSets.length === 0) {
      // An empty layout still, so a script can merge every shard's output without checking which exist.
      const empty = flags.format === 'registry' && !existsSync(flags.output);
      if (empty) for (const dir of ['blobs', 'repositories']) await mkdir(join(flags.output, REGISTRY_ROOT, dir), { recursive: true });
      process.stderr.write(`ocisave: shard ${flags.shard!.index}/${flags.shard!.count} holds none of the ${all.length + collected.tagSets.length} inputs: ${empty ? `wrote an empty layout at ${flags.output}` : 'nothing to save'}\n`);
      return;
    }
    if (flags.since && flags.format !== 'registry') throw new Error('--since works with --format registry');
    if (flags.scoped && flags.format !== 'registry') throw new Error('--scoped works with --format registry (the other formats name images by their full reference)');
    if (flags.keepIndex && flags.format !== 'oci' && flags.format !== 'oci-archive') throw new Error('--keep-index works with --format oci and oci-archive');
    const mode = progressMode(!!flags.json, !!flags.quiet);
    const render = createRenderer(mode);
    for (const message of collected.warnings) render({ type: 'warning', message });
    // Failed inputs are listed once, at the end (main's error lines, or the summary's "failed:" lines).
    const events = new EngineEvents().on((e) => (e.type === 'resolve-failed' && mode !== 'json' ? undefined : render(e)));
    // docker save archives hold one platform per image: default to the host's, as docker pull does.
    // A lock's own --platform is the default for a save from it (a multi-platform lock cannot make a docker archive).
    const docker = flags.format === 'docker';
    // A lock given with -f counts as much as one given with --lock.
    const lockPlatform = lockPlatforms([...locked.platforms, ...collected.lockPlatforms]);
    const lockDefault = lockPlatform && !(docker && lockPlatform === 'all') ? lockPlatform : undefined;
    const platforms = platformsFrom(flags, lockDefault ?? (docker ? defaultPlatform() : 'all'));
    const summary = await save(inputs, {
      format: flags.format,
      out: flags.output,
      uncompressed: flags.uncompressed,
      since: flags.since,
      preserveDigests: flags.preserveDigests,
      scoped: flags.scoped,
      keepIndex: flags.keepIndex,
      tagSets,
      hostOptions: collected.hostOptions,
      platforms,
      cacheDir: flags.cache,
      plainHttp: flags.plainHttp,
      ...networkFrom(flags),
      limits: netLimitsFrom(flags),
      jobs: flags.jobs,
      fixedJobs: flags.fixedJobs,
      hasher: flags.hasher,
      segmentBytes: flags.segmentSize === undefined ? undefined : flags.segmentSize * 1024 * 1024,
      keepGoing: flags.keepGoing,
      offline: flags.offline,
      mirrors: flags.registryMirror,
      withSignatures: flags.withSignatures,
      credentials: await credentialsFrom(flags, registriesOf([...inputs, ...tagSets.map((t) => t.repository)]), collected.credentials),
      events,
      signal: interruptSignal(),
    });
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${summaryText(summary)}\n`);
    if (summary.failures.length) process.exitCode = 1;
  });
  return cmd;
}
