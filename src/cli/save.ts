// `ocisave save`: references and input files in, one output out.
import { Command, Option } from 'commander';
import { EngineEvents } from '../engine/events.js';
import { save } from '../engine/pipeline.js';
import { readReferenceInputs } from '../inputs/index.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../link/index.js';
import { parseReference } from '../ref/reference.js';
import { addFetchOptions, credentialsFrom, defaultPlatform, platformsFrom, type CommonFlags } from './options.js';
import { createRenderer, progressMode, summaryText } from './render.js';

interface SaveFlags extends CommonFlags {
  file?: string[];
  output: string;
  format: OutputFormat;
  keepGoing?: boolean;
  uncompressed?: boolean;
  offline?: boolean;
}

/** References from the arguments and every -f file, in order, each once. */
export async function collectInputs(args: string[], files: string[] = []): Promise<string[]> {
  const refs = [...args];
  for (const file of files) refs.push(...(await readReferenceInputs(file)).map((r) => r.ref));
  return [...new Set(refs)];
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

export function saveCommand(): Command {
  const cmd = new Command('save')
    .description('save images and artifacts (and everything they reference) from registries to disk')
    .argument('[references...]', 'image references: nginx:1.25, host:port/repo/name:tag, name@sha256:…')
    .option('-f, --file <path>', 'image list, Kubernetes YAML or Helm chart (dir or .tgz); repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .requiredOption('-o, --output <path>', 'where to write the output')
    .addOption(new Option('--format <format>', 'output format').choices([...OUTPUT_FORMATS]).default('registry'))
    .option('--uncompressed', 'docker format: write uncompressed layers, as docker save does')
    .option('--keep-going', 'save what can be saved when some images fail (exit status still non-zero)')
    .option('--offline', 'use only the cache: tags as an earlier run resolved them');
  addFetchOptions(cmd);
  cmd.action(async (args: string[], flags: SaveFlags) => {
    const inputs = await collectInputs(args, flags.file);
    if (inputs.length === 0) throw new Error('nothing to save: give references as arguments or -f FILE');
    const events = new EngineEvents().on(createRenderer(progressMode(!!flags.json, !!flags.quiet)));
    // docker save archives hold one platform per image: default to the host's, as docker pull does.
    const platforms = platformsFrom(flags, (flags.format as string) === 'docker' ? defaultPlatform() : 'all');
    const summary = await save(inputs, {
      format: flags.format,
      out: flags.output,
      uncompressed: flags.uncompressed,
      platforms,
      cacheDir: flags.cache,
      plainHttp: flags.plainHttp,
      jobs: flags.jobs,
      hasher: flags.hasher,
      segmentBytes: flags.segmentSize === undefined ? undefined : flags.segmentSize * 1024 * 1024,
      keepGoing: flags.keepGoing,
      offline: flags.offline,
      credentials: await credentialsFrom(flags, registriesOf(inputs)),
      events,
    });
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : `${summaryText(summary)}\n`);
    if (summary.failures.length) process.exitCode = 1;
  });
  return cmd;
}
