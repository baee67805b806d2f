// `ocisave save`: references and input files in, one output out.
import { Command, Option } from 'commander';
import type { OcisaveEvent } from '../api/events.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../link/index.js';
import { addFetchOptions, addMirrorOption, fetchRequestFrom, type CommonFlags } from './options.js';
import { addReferenceInputs, addContextOptions, addTagSetOptions, inputOptionsFrom, type InputFlags } from './inputs.js';
import { createRenderer, progressMode, summaryText } from './render.js';
import { addShardOption } from './shard.js';
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
    const { save } = await import('../api/save.js');
    const mode = progressMode(!!flags.json, !!flags.quiet);
    const render = createRenderer(mode);
    // Failed inputs are listed once, at the end (main's error lines, or the summary's "failed:" lines).
    const onEvent = (e: OcisaveEvent) => (e.type === 'resolve-failed' && mode !== 'json' ? undefined : render(e));
    const result = await save({
      ...(await fetchRequestFrom(flags, onEvent)),
      ...inputOptionsFrom(args, flags),
      lock: flags.lock,
      shard: flags.shard,
      format: flags.format,
      out: flags.output,
      uncompressed: flags.uncompressed,
      since: flags.since,
      preserveDigests: flags.preserveDigests,
      scoped: flags.scoped,
      keepIndex: flags.keepIndex,
      keepGoing: flags.keepGoing,
      offline: flags.offline,
      withSignatures: flags.withSignatures,
      signal: interruptSignal(),
    });
    if (result.shardEmpty) {
      const e = result.shardEmpty;
      process.stderr.write(`ocisave: shard ${e.index}/${e.count} holds none of the ${e.inputs} inputs: ${e.wroteEmptyLayout ? `wrote an empty layout at ${flags.output}` : 'nothing to save'}\n`);
      return;
    }
    process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : `${summaryText(result)}\n`);
    if (result.failures.length) process.exitCode = 1;
  });
  return cmd;
}
