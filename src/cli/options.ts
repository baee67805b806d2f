// Options several commands share, and turning them into the library's options.
import { Command, InvalidArgumentError, Option } from 'commander';
import { HASHER_KINDS } from '../hash/hasher.js';
import { parsePlatformSelector } from '../ref/platform.js';
import { parseReference } from '../ref/reference.js';
import { DEFAULT_NET_LIMITS } from '../registry/timeouts.js';
import type { EventHandler } from '../api/events.js';
import type { FetchRequest, RegistryOptions } from '../api/options.js';
import { UsageError } from '../util/errors.js';

/** The flags several commands share: the library's options by the same names, and the CLI's own. */
export interface CommonFlags
  extends Pick<RegistryOptions, 'plainHttp' | 'username' | 'tlsVerify' | 'certDir' | 'registriesConf' | 'credsRegistry' | 'authfile' | 'connectTimeout' | 'headerTimeout' | 'speedLimit' | 'speedTime' | 'retries'>,
    Pick<FetchRequest, 'jobs' | 'fixedJobs' | 'hasher' | 'segmentSize' | 'registryMirror'> {
  cache?: string;
  platform?: string;
  passwordStdin?: boolean;
  json?: boolean;
  quiet?: boolean;
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
export function addLimitOptions(cmd: Command, retriesWhat = 'per blob, and per manifest or token request'): Command {
  const d = DEFAULT_NET_LIMITS;
  return cmd
    .option('--connect-timeout <s>', `give up connecting to a registry after this many seconds (default ${d.connectTimeoutMs / 1000})`, positiveSeconds)
    .option('--header-timeout <s>', `give up on an answer whose headers take longer than this (default ${d.headersTimeoutMs / 1000})`, positiveSeconds)
    .option('--speed-limit <bytes/s>', `drop a transfer slower than this for --speed-time, then resume or retry it; 0: never (default ${d.speedLimit})`, nonNegativeInt)
    .option('--speed-time <s>', `the window of --speed-limit, in seconds (default ${d.speedTimeMs / 1000})`, positiveSeconds)
    .option('--retries <n>', `retries ${retriesWhat} (default ${d.retries})`, nonNegativeInt);
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
  cmd
    .option('--platform <list>', 'platforms to keep from multi-arch images: os/arch[/variant],… or all', platformArg)
    .option('--cache <dir>', 'blob cache (default: $OCISAVE_CACHE or ~/.cache/ocisave)')
    .option('-j, --jobs <n>', 'most connections per registry host (default 32); the number in use adapts to what the host delivers', positiveInt)
    .option('--fixed-jobs', 'exactly --jobs connections per host, and 32 MiB ranges unless --segment-size says (no adaptation)')
    .addOption(new Option('--hasher <kind>', 'sha256 implementation').choices(HASHER_KINDS as string[]))
    .option('--segment-size <MiB>', 'fetch blobs of at least twice this size as parallel ranges of it (0: never; default: 3 s at one connection\'s measured rate, 8-256 MiB)', nonNegativeInt)
    .option('--json', 'progress as JSON lines on stderr, the result as JSON on stdout')
    .option('-q, --quiet', 'no progress output');
  addNetworkOptions(cmd);
  addLimitOptions(cmd);
  return addCredentialOptions(cmd);
}

function tlsVerifyValue(value: string | undefined): boolean {
  if (value === undefined || value === 'true') return true;
  if (value === 'false') return false;
  throw new InvalidArgumentError('true or false (--tls-verify=false)');
}

const HOST_PORT_RE = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$/;
function registryHost(value: string): string {
  if (!HOST_PORT_RE.test(value)) throw new InvalidArgumentError('a registry host[:port], as references name it (docker.io, quay.io, 127.0.0.1:5000)');
  return value;
}

/** How registries are reached: TLS, registries.conf (proxies come from the environment). */
export function addNetworkOptions(cmd: Command, plainHttpHelp = 'talk plain HTTP to every registry, without trying HTTPS first'): Command {
  return cmd
    .option('--plain-http', plainHttpHelp)
    .option('--tls-verify [bool]', 'verify registry certificates (default true); --tls-verify=false also allows plain HTTP, as skopeo does', tlsVerifyValue)
    .option('--cert-dir <dir>', 'CA certificates (*.crt) and client pair (*.cert + *.key) for every registry, instead of the certs.d directories')
    .option('--registries-conf <file>', 'containers-registries.conf (v2) to read instead of $XDG_CONFIG_HOME/containers/registries.conf or /etc/containers/registries.conf');
}

/** --username/--password-stdin, the registries they are for, and an auth file. */
export function addCredentialOptions(cmd: Command, usernameHelp = 'registry user (for the registries of --creds-registry, else every registry named on the command line)'): Command {
  return cmd
    .option('--username <name>', usernameHelp)
    .option('--password-stdin', 'read the password for --username from standard input')
    .option('--creds-registry <host>', 'the registry --username/--password-stdin are for (host[:port]); repeatable', (v: string, prev: string[] = []) => [...prev, registryHost(v)])
    .option('--authfile <file>', 'auth file (containers-auth.json or docker config.json) to read first, as REGISTRY_AUTH_FILE');
}

/** `--registry-mirror HOST` (repeatable), for the commands that pass `mirrors` on to the library. */
export function addMirrorOption(cmd: Command): Command {
  return cmd.option(
    '--registry-mirror <host>',
    'Docker Hub mirror tried before Docker Hub, as docker\'s registry-mirrors (host[:port]); repeatable',
    (v: string, prev: string[] = []) => [...prev, v],
  );
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** The password for --username, from standard input (passwords are never arguments, never printed). */
async function passwordFrom(flags: CommonFlags): Promise<string | undefined> {
  if (flags.passwordStdin && !flags.username) throw new UsageError('--password-stdin needs --username');
  if (flags.credsRegistry?.length && !flags.username) throw new UsageError('--creds-registry names the registry for --username: give --username and --password-stdin too');
  if (!flags.username) return undefined;
  if (!flags.passwordStdin) throw new UsageError('--username needs --password-stdin (passwords are not taken as arguments)');
  return readStdin();
}

/** The registry flags as library options (the library reads registries.conf and finds credentials). */
export async function registryOptionsFrom(flags: CommonFlags): Promise<RegistryOptions> {
  return {
    plainHttp: flags.plainHttp,
    tlsVerify: flags.tlsVerify,
    certDir: flags.certDir,
    registriesConf: flags.registriesConf,
    username: flags.username,
    password: await passwordFrom(flags),
    credsRegistry: flags.credsRegistry,
    authfile: flags.authfile,
    connectTimeout: flags.connectTimeout,
    headerTimeout: flags.headerTimeout,
    speedLimit: flags.speedLimit,
    speedTime: flags.speedTime,
    retries: flags.retries,
  };
}

/** The flags of addFetchOptions (and the registry flags) as library options. */
export async function fetchRequestFrom(flags: CommonFlags, onEvent: EventHandler): Promise<FetchRequest> {
  return {
    ...(await registryOptionsFrom(flags)),
    cacheDir: flags.cache,
    platforms: flags.platform,
    jobs: flags.jobs,
    fixedJobs: flags.fixedJobs,
    hasher: flags.hasher,
    segmentSize: flags.segmentSize,
    registryMirror: flags.registryMirror,
    onEvent,
  };
}
