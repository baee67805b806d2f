// Options several commands share, and turning them into library options.
import { Command, InvalidArgumentError, Option } from 'commander';
import { HASHER_KINDS, type HasherKind } from '../hash/hasher.js';
import { hostPlatform, parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { lookupCredential, type Credential } from '../registry/credentials.js';
import type { CredentialLookup } from '../registry/client.js';
import { DEFAULT_NET_LIMITS, type NetLimits } from '../registry/timeouts.js';

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
  connectTimeout?: number;
  headerTimeout?: number;
  speedLimit?: number;
  speedTime?: number;
  retries?: number;
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

/** Seconds, fractions allowed ("0.5"), more than 0. */
export function positiveSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new InvalidArgumentError('must be a number of seconds, more than 0 and at most 86400');
  return n;
}

/** --connect-timeout, --header-timeout, --speed-limit, --speed-time, --retries: every command that talks to registries. */
export function addNetworkOptions(cmd: Command, retriesWhat = 'per blob, and per manifest or token request'): Command {
  const d = DEFAULT_NET_LIMITS;
  return cmd
    .option('--connect-timeout <s>', `give up connecting to a registry after this many seconds (default ${d.connectTimeoutMs / 1000})`, positiveSeconds)
    .option('--header-timeout <s>', `give up on an answer whose headers take longer than this (default ${d.headersTimeoutMs / 1000})`, positiveSeconds)
    .option('--speed-limit <bytes/s>', `drop a transfer slower than this for --speed-time, then resume or retry it; 0: never (default ${d.speedLimit})`, nonNegativeInt)
    .option('--speed-time <s>', `the window of --speed-limit, in seconds (default ${d.speedTimeMs / 1000})`, positiveSeconds)
    .option('--retries <n>', `retries ${retriesWhat} (default ${d.retries})`, nonNegativeInt);
}

/** The network limits the flags ask for, defaults for the rest. */
export function netLimitsFrom(flags: CommonFlags): NetLimits {
  const d = DEFAULT_NET_LIMITS;
  const ms = (s: number | undefined, fallback: number) => (s === undefined ? fallback : Math.round(s * 1000));
  return {
    connectTimeoutMs: ms(flags.connectTimeout, d.connectTimeoutMs),
    headersTimeoutMs: ms(flags.headerTimeout, d.headersTimeoutMs),
    speedLimit: flags.speedLimit ?? d.speedLimit,
    speedTimeMs: ms(flags.speedTime, d.speedTimeMs),
    retries: flags.retries ?? d.retries,
  };
}

export function addFetchOptions(cmd: Command): Command {
  addNetworkOptions(cmd);
  return cmd
    .option('--platform <list>', 'platforms to keep from multi-arch images: os/arch[/variant],… or all')
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
export async function credentialsFrom(flags: CommonFlags, registries: string[]): Promise<CredentialLookup> {
  let overrides: Map<string, Credential> | undefined;
  if (flags.passwordStdin && !flags.username) throw new Error('--password-stdin needs --username');
  if (flags.username) {
    if (!flags.passwordStdin) throw new Error('--username needs --password-stdin (passwords are not taken as arguments)');
    const password = await readStdin();
    overrides = new Map(registries.map((r) => [r, { username: flags.username!, password }]));
  }
  return (registry) => lookupCredential(registry, { overrides });
}
