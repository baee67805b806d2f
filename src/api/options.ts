// Options every library call that talks to registries shares, named after the CLI's flags
// (camelCase; repeatable flags are arrays), their defaults, and their translation into the
// engine's options. Durations are seconds and sizes MiB, as on the command line.
import { defaultCacheDir } from '../cache/cache.js';
import { DEFAULT_JOBS, type FetchOptions } from '../engine/pipeline.js';
import type { HasherKind } from '../hash/hasher.js';
import { parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import type { CredentialLookup } from '../registry/client.js';
import { lookupCredential, type Credential } from '../registry/credentials.js';
import type { NetworkOptions } from '../registry/network.js';
import { loadRegistriesConf } from '../registry/registries-conf.js';
import { DEFAULT_NET_LIMITS, type NetLimits } from '../registry/timeouts.js';
import { engineEvents, type EventHandler } from './events.js';
import { UsageError } from '../util/errors.js';

export { defaultCacheDir, DEFAULT_JOBS };

/** How registries are reached and who we are to them. */
export interface RegistryOptions {
  /** Plain HTTP to every registry, without trying HTTPS first. */
  plainHttp?: boolean;
  /** false: skip certificate verification, and allow plain HTTP (skopeo's --tls-verify=false). */
  tlsVerify?: boolean;
  /** CA certificates (*.crt) and a client pair (*.cert + *.key) for every registry. */
  certDir?: string;
  /** containers-registries.conf file; default $XDG_CONFIG_HOME/containers/registries.conf, else /etc/containers/registries.conf. */
  registriesConf?: string;
  /** With `password`: credentials for `credsRegistry` (else every registry the inputs name). Never printed. */
  username?: string;
  password?: string;
  credsRegistry?: string[];
  /** Auth file read before the others, as REGISTRY_AUTH_FILE. */
  authfile?: string;
  /** Seconds; defaults in DEFAULT_NET_LIMITS (registry/timeouts.ts). */
  connectTimeout?: number;
  headerTimeout?: number;
  /** Bytes a second, over `speedTime` seconds; 0: never. */
  speedLimit?: number;
  speedTime?: number;
  retries?: number;
}

/** What save, resolve, mirror and unpack share on top of the registry options. */
export interface FetchRequest extends RegistryOptions {
  /** Blob cache; default $OCISAVE_CACHE, else $XDG_CACHE_HOME/ocisave (~/.cache/ocisave). */
  cacheDir?: string;
  /** 'all', 'os/arch[/variant],…', or parsed platforms; the default depends on the call. */
  platforms?: PlatformSelector | string;
  /** Most connections per registry host (default DEFAULT_JOBS); the number in use adapts to the host's rate. */
  jobs?: number;
  /** Exactly `jobs` connections per host and fixed ranges: no adaptation. */
  fixedJobs?: boolean;
  hasher?: HasherKind;
  /** MiB: a fixed range size (blobs of at least twice it download as parallel ranges); 0: never; default: sized from the measured rate. */
  segmentSize?: number;
  /** Docker Hub mirrors (host[:port]), tried in order. */
  registryMirror?: string[];
  offline?: boolean;
  withSignatures?: boolean;
  keepGoing?: boolean;
  /** Every progress event, stamped with the event schema. */
  onEvent?: EventHandler;
  /** Abort: downloads checkpoint and the call rejects with InterruptedError. */
  signal?: AbortSignal;
}

export function netLimitsOf(o: RegistryOptions): NetLimits {
  const d = DEFAULT_NET_LIMITS;
  const ms = (s: number | undefined, fallback: number) => (s === undefined ? fallback : Math.round(s * 1000));
  return {
    connectTimeoutMs: ms(o.connectTimeout, d.connectTimeoutMs),
    headersTimeoutMs: ms(o.headerTimeout, d.headersTimeoutMs),
    speedLimit: o.speedLimit ?? d.speedLimit,
    speedTimeMs: ms(o.speedTime, d.speedTimeMs),
    retries: o.retries ?? d.retries,
  };
}

/** TLS settings and registries.conf (read here); proxies come from the environment. */
export function networkOf(o: RegistryOptions): NetworkOptions {
  return { tlsVerify: o.tlsVerify, certDir: o.certDir, registriesConf: loadRegistriesConf(o.registriesConf) };
}

/** `given` parsed, or `fallback` when none was given. */
export function platformsOf(given: PlatformSelector | string | undefined, fallback: PlatformSelector): PlatformSelector {
  if (given === undefined) return fallback;
  return typeof given === 'string' ? parsePlatformSelector(given) : given;
}

/**
 * Credentials as docker and crane find them; username/password apply to `credsRegistry`, else to
 * `registries` (those the inputs name), and win over an input's own (a sync YAML's).
 */
export function credentialsOf(o: RegistryOptions, registries: string[], fromInputs?: ReadonlyMap<string, Credential>): CredentialLookup {
  let overrides: Map<string, Credential> | undefined = fromInputs?.size ? new Map(fromInputs) : undefined;
  if (o.username !== undefined) {
    if (o.password === undefined) throw new UsageError('a username needs a password (the CLI reads it with --password-stdin)');
    overrides ??= new Map();
    for (const r of o.credsRegistry?.length ? o.credsRegistry : registries) overrides.set(r, { username: o.username, password: o.password });
  }
  const env = o.authfile ? { ...process.env, REGISTRY_AUTH_FILE: o.authfile } : undefined;
  return (registry) => lookupCredential(registry, { overrides, env });
}

/** The engine's fetch options for a request (credentials, platforms and inputs are the caller's). */
export function fetchOptionsOf(o: FetchRequest, platforms: PlatformSelector, credentials: CredentialLookup): FetchOptions {
  return {
    platforms,
    cacheDir: o.cacheDir,
    plainHttp: o.plainHttp,
    ...networkOf(o),
    limits: netLimitsOf(o),
    jobs: o.jobs,
    fixedJobs: o.fixedJobs,
    hasher: o.hasher,
    segmentBytes: o.segmentSize === undefined ? undefined : o.segmentSize * 1024 * 1024,
    keepGoing: o.keepGoing,
    offline: o.offline,
    mirrors: o.registryMirror,
    withSignatures: o.withSignatures,
    credentials,
    events: engineEvents(o.onEvent),
    signal: o.signal,
  };
}
