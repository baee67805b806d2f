// Options several commands share, and turning them into library options.
import { Command, InvalidArgumentError, Option } from 'commander';
import { HASHER_KINDS, type HasherKind } from '../hash/hasher.js';
import { hostPlatform, parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { parseReference } from '../ref/reference.js';
import { lookupCredential, type Credential } from '../registry/credentials.js';
import type { CredentialLookup } from '../registry/client.js';

export interface CommonFlags {
  cache?: string;
  platform?: string;
  plainHttp?: boolean;
  jobs?: number;
  hasher?: HasherKind;
  segmentSize?: number;
  username?: string;
  passwordStdin?: boolean;
  json?: boolean;
  quiet?: boolean;
  registryMirror?: string[];
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a whole number of at least 1');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number, 0 or more');
  return n;
}

/** Commander parser for --platform: a selector that does not parse is a usage error (exit 2). */
export function platformArg(value: string): string {
  try {
    parsePlatformSelector(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

/** Commander parser for a reference argument: one that does not parse is a usage error (exit 2). */
export function referenceArg(value: string): string {
  try {
    parseReference(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

/** The same, for a variadic references argument. */
export function referenceArgs(value: string, previous: string[] = []): string[] {
  return [...previous, referenceArg(value)];
}

export function addFetchOptions(cmd: Command): Command {
  return cmd
    .option('--platform <list>', 'platforms to keep from multi-arch images: os/arch[/variant],… or all', platformArg)
    .option('--cache <dir>', 'blob cache (default: $OCISAVE_CACHE or ~/.cache/ocisave)')
    .option('--plain-http', 'talk plain HTTP to every registry (loopback registries always use it)')
    .option('-j, --jobs <n>', 'parallel downloads per registry host', positiveInt)
    .addOption(new Option('--hasher <kind>', 'sha256 implementation').choices(HASHER_KINDS as string[]))
    .option('--segment-size <MiB>', 'fetch blobs of at least twice this size as parallel ranges of it (0: never)', nonNegativeInt)
    .option('--username <name>', 'registry user for every registry named on the command line')
    .option('--password-stdin', 'read the password for --username from standard input')
    .option('--json', 'progress as JSON lines on stderr, the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output');
}

/** `--registry-mirror HOST` (repeatable), for the commands that pass `mirrors` on to the library. */
export function addMirrorOption(cmd: Command): Command {
  return cmd.option(
    '--registry-mirror <host>',
    'Docker Hub mirror tried before Docker Hub, as docker\'s registry-mirrors (host[:port]); repeatable',
    (v: string, prev: string[] = []) => [...prev, v],
  );
}

export function platformsFrom(flags: CommonFlags, fallback: PlatformSelector = 'all'): PlatformSelector {
  if (!flags.platform) return fallback;
  return parsePlatformSelector(flags.platform);
}

export function defaultPlatform(): PlatformSelector {
  return [hostPlatform()];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/**
 * Credentials as docker and crane find them; --username/--password-stdin apply to the
 * registries of the references given (they are never printed).
 */
export async function credentialsFrom(flags: CommonFlags, registries: string[], fromInputs?: ReadonlyMap<string, Credential>): Promise<CredentialLookup> {
  // An input's own credentials (a sync YAML's) are for its registry only; --username wins over them.
  let overrides: Map<string, Credential> | undefined = fromInputs?.size ? new Map(fromInputs) : undefined;
  if (flags.passwordStdin && !flags.username) throw new Error('--password-stdin needs --username');
  if (flags.username) {
    if (!flags.passwordStdin) throw new Error('--username needs --password-stdin (passwords are not taken as arguments)');
    const password = await readStdin();
    overrides ??= new Map();
    for (const r of registries) overrides.set(r, { username: flags.username!, password });
  }
  return (registry) => lookupCredential(registry, { overrides });
}
