// containers-registries.conf(5), version 2 (TOML), the file podman, skopeo and buildah read:
//   [[registry]] prefix, location, insecure, blocked, pull-from-mirror (mirror-by-digest-only)
//   [[registry.mirror]] location, insecure, pull-from-mirror
// Which file: --registries-conf FILE; else $XDG_CONFIG_HOME/containers/registries.conf
// (~/.config/...) when it exists, else /etc/containers/registries.conf — one file, as
// containers/image takes the user's file instead of the system's. Drop-ins
// (registries.conf.d/) and short-name aliases are not read: ocisave needs fully named references.
// Version 1 files ([registries.insecure], [registries.block]) give their insecure and blocked lists.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { HostOptionsMap } from './host-options.js';
import { InvalidInputError, inputError } from '../util/errors.js';

export type PullFromMirror = 'all' | 'digest-only' | 'tag-only';

export interface MirrorEntry {
  location: string;
  insecure: boolean;
  pullFromMirror: PullFromMirror;
}

export interface RegistryEntry {
  /** What references are matched against: host[/path], or *.domain. */
  prefix: string;
  /** Where the prefix really lives (the prefix itself when not given). */
  location: string;
  insecure: boolean;
  blocked: boolean;
  mirrors: MirrorEntry[];
}

export interface RegistriesConf {
  file: string;
  registries: RegistryEntry[];
}

export const SYSTEM_REGISTRIES_CONF = '/etc/containers/registries.conf';
/** A registries.conf is a few KiB; this bounds what a hostile or mistaken file costs. */
const MAX_CONF_BYTES = 1024 * 1024;

/** The file to read, or undefined when there is none (an explicit FILE must exist). */
export function registriesConfPath(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (explicit) return explicit;
  const user = join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'containers', 'registries.conf');
  if (existsSync(user)) return user;
  return existsSync(SYSTEM_REGISTRIES_CONF) ? SYSTEM_REGISTRIES_CONF : undefined;
}

export function loadRegistriesConf(explicit?: string, env: NodeJS.ProcessEnv = process.env): RegistriesConf | undefined {
  const file = registriesConfPath(explicit, env);
  if (!file) return undefined;
  let text: string;
  try {
    if (statSync(file).size > MAX_CONF_BYTES) throw new InvalidInputError(`larger than ${MAX_CONF_BYTES} bytes`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw inputError(`registries.conf ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
  return parseRegistriesConf(text, file);
}

function str(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new InvalidInputError(`${what} must be a string`);
  return v;
}
function bool(v: unknown, what: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new InvalidInputError(`${what} must be true or false`);
  return v;
}
function pullFrom(v: unknown, what: string): PullFromMirror | undefined {
  if (v === undefined || v === '') return undefined;
  if (v !== 'all' && v !== 'digest-only' && v !== 'tag-only') throw new InvalidInputError(`${what} must be "all", "digest-only" or "tag-only"`);
  return v;
}

/** A location or prefix as references write it: no scheme, no trailing slash. */
function cleanLocation(v: string, what: string): string {
  const s = v.trim().replace(/\/+$/, '');
  if (!s || /^[a-z]+:\/\//i.test(s) || /\s/.test(s)) throw new InvalidInputError(`${what} "${v}" must be host[:port][/path], without a scheme`);
  return s;
}

function parseEntry(raw: Record<string, unknown>, at: string): RegistryEntry {
  const rawLocation = str(raw.location, `${at}.location`);
  const location = rawLocation === undefined ? undefined : cleanLocation(rawLocation, `${at}.location`);
  const prefix = str(raw.prefix, `${at}.prefix`) ?? location;
  if (!prefix) throw new InvalidInputError(`${at} has neither prefix nor location`);
  const cleanPrefix = prefix.startsWith('*.') ? prefix.trim() : cleanLocation(prefix, `${at}.prefix`);
  if (cleanPrefix.startsWith('*.') && location) throw new InvalidInputError(`${at}: a wildcard prefix (${prefix}) cannot have a location`);
  const legacyDigestOnly = bool(raw['mirror-by-digest-only'], `${at}.mirror-by-digest-only`);
  const defaultPull = legacyDigestOnly ? 'digest-only' : 'all';
  const mirrorsRaw = raw.mirror ?? [];
  if (!Array.isArray(mirrorsRaw)) throw new InvalidInputError(`${at}.mirror must be an array of tables ([[registry.mirror]])`);
  const mirrors = mirrorsRaw.map((m: Record<string, unknown>, i): MirrorEntry => {
    const where = `${at}.mirror[${i}]`;
    const loc = str(m.location, `${where}.location`);
    if (!loc) throw new InvalidInputError(`${where} has no location`);
    return { location: cleanLocation(loc, `${where}.location`), insecure: bool(m.insecure, `${where}.insecure`), pullFromMirror: pullFrom(m['pull-from-mirror'], `${where}.pull-from-mirror`) ?? defaultPull };
  });
  return {
    prefix: cleanPrefix,
    location: location ?? cleanPrefix,
    insecure: bool(raw.insecure, `${at}.insecure`),
    blocked: bool(raw.blocked, `${at}.blocked`),
    mirrors,
  };
}

/** Version 1's lists: [registries.insecure] registries = [...], [registries.block] registries = [...]. */
function parseV1(doc: Record<string, unknown>): RegistryEntry[] {
  const tables = doc.registries as Record<string, { registries?: unknown }> | undefined;
  if (!tables || typeof tables !== 'object') return [];
  const list = (name: string) => (Array.isArray(tables[name]?.registries) ? (tables[name]!.registries as unknown[]).filter((x): x is string => typeof x === 'string') : []);
  const out = new Map<string, RegistryEntry>();
  const entry = (host: string) => out.get(host) ?? out.set(host, { prefix: host, location: host, insecure: false, blocked: false, mirrors: [] }).get(host)!;
  for (const h of list('insecure')) entry(h).insecure = true;
  for (const h of list('block')) entry(h).blocked = true;
  return [...out.values()];
}

export function parseRegistriesConf(text: string, file: string): RegistriesConf {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw inputError(`registries.conf ${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`, err);
  }
  try {
    const raw = doc.registry;
    if (raw !== undefined && !Array.isArray(raw)) throw new InvalidInputError('registry must be an array of tables ([[registry]])');
    const registries = (raw ?? []).map((r: Record<string, unknown>, i: number) => parseEntry(r, `registry[${i}]`));
    return { file, registries: [...registries, ...parseV1(doc)] };
  } catch (err) {
    throw inputError(`registries.conf ${file}: ${(err as Error).message}`, err);
  }
}

/** Whether `prefix` covers the name (registry/repository): at a path boundary, or *.domain on the host. */
function matches(prefix: string, name: string): boolean {
  if (prefix.startsWith('*.')) {
    const host = name.split('/')[0]!;
    return host.endsWith(prefix.slice(1));
  }
  return name === prefix || name.startsWith(`${prefix}/`);
}

/** The entry for `name` (registry/repository): the longest matching prefix, as containers/image chooses. */
export function findRegistry(conf: RegistriesConf | undefined, name: string): RegistryEntry | undefined {
  let best: RegistryEntry | undefined;
  for (const r of conf?.registries ?? []) if (matches(r.prefix, name) && (!best || r.prefix.length > best.prefix.length)) best = r;
  return best;
}

/** `name` moved from the entry's prefix to `location` (a location or a mirror's). */
export function rewrite(entry: RegistryEntry, name: string, location: string): string {
  return entry.prefix.startsWith('*.') ? name : location + name.slice(entry.prefix.length);
}

/**
 * Every concrete host the file marks insecure (no certificate verification, plain HTTP allowed):
 * the hosts connected to, i.e. locations and mirrors. TLS settings are per host, so an insecure
 * prefix makes its whole location host insecure. Wildcard prefixes name no host: not applied.
 */
export function insecureHosts(conf: RegistriesConf | undefined): HostOptionsMap {
  const out: HostOptionsMap = {};
  for (const r of conf?.registries ?? []) {
    if (r.insecure && !r.prefix.startsWith('*.')) out[r.location.split('/')[0]!] = { tlsVerify: false };
    for (const m of r.mirrors) if (m.insecure) out[m.location.split('/')[0]!] = { tlsVerify: false };
  }
  return out;
}
