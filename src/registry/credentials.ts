// Registry credentials, found where docker, crane, podman and skopeo look:
// explicit flags, containers auth.json, docker's config.json, credential helpers.
//
// Nothing here may print or put a secret into an error message. Error texts
// name files, config keys and helper programs only.
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { inspect } from 'node:util';
import { InvalidInputError, inputError } from '../util/errors.js';

export type Credential =
  | { username: string; password: string }
  /** OAuth2 refresh token (docker `identitytoken`, helper Username `<token>`), exchanged at the token endpoint. */
  | { identityToken: string }
  /** Bearer token to send to the registry as is (docker `registrytoken`). */
  | { registryToken: string };

export interface LookupOptions {
  /** Environment to read (HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE, XDG_*, PATH for helpers). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Credentials given on the command line, keyed by registry host. Checked first. */
  overrides?: Map<string, Credential>;
  /**
   * Repository path (e.g. "org/app") for podman's namespaced auth.json keys
   * (`quay.io/org`); without it only host-wide entries match.
   */
  repository?: string;
  /** How long a credential helper may run. Default 60 s (some helpers refresh tokens over the network). */
  helperTimeoutMs?: number;
}

/** The key docker uses for Docker Hub in config.json and when asking helpers. */
export const DOCKER_HUB_SERVER_URL = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/**
 * Looks up the credential for a registry host. Order: `overrides`, then
 * `$REGISTRY_AUTH_FILE` (or podman's default auth.json files when it is unset),
 * then `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`). Within a
 * file: `credHelpers[host]`, else `auths[host]`, else `credsStore`.
 * Returns undefined for anonymous access.
 */
export async function lookupCredential(registryHost: string, opts: LookupOptions = {}): Promise<Credential | undefined> {
  const env = opts.env ?? process.env;
  const host = canonicalHost(registryHost);
  if (opts.overrides) {
    for (const [key, cred] of opts.overrides) {
      if (parseKey(key).host === host) return protect(cred);
    }
  }
  for (const file of authFiles(env)) {
    const config = await readAuthConfig(file);
    if (!config) continue;
    const cred = await lookupInConfig(config, file, registryHost, opts.repository, env, opts.helperTimeoutMs ?? 60_000);
    if (cred) return protect(cred);
  }
  return undefined;
}

/** Files consulted in order, as containers-auth.json(5) and docker describe them. */
export function authFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  else {
    // podman/skopeo defaults when REGISTRY_AUTH_FILE is unset.
    if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
    files.push(join(env.XDG_CONFIG_HOME || join(home, '.config'), 'containers', 'auth.json'));
  }
  files.push(dockerConfigPath(env));
  return files;
}

export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG ? join(env.DOCKER_CONFIG, 'config.json') : join(env.HOME || homedir(), '.docker', 'config.json');
}

/** Lower-cased host[:port]; every Docker Hub alias becomes "docker.io". Accepts URLs too. */
export function canonicalHost(host: string): string {
  return parseKey(host).host;
}

/** What to send a credential helper: docker sends Hub's legacy URL, the bare host otherwise. */
export function helperServerURL(registryHost: string): string {
  const host = canonicalHost(registryHost);
  return host === 'docker.io' ? DOCKER_HUB_SERVER_URL : registryHost.replace(/^https?:\/\//i, '').replace(/\/.*$/, '');
}

/**
 * Splits a config key. Keys with a scheme are docker style (`https://host/v1/`:
 * the path means nothing); keys without are podman style, where a path is a
 * repository namespace (`quay.io/org`).
 */
function parseKey(key: string): { host: string; namespace: string } {
  let k = key.trim();
  const hadScheme = /^https?:\/\//i.test(k);
  k = k.replace(/^https?:\/\//i, '');
  const slash = k.indexOf('/');
  let host = (slash >= 0 ? k.slice(0, slash) : k).toLowerCase();
  let namespace = slash >= 0 ? k.slice(slash + 1).replace(/\/+$/, '') : '';
  if (hadScheme || namespace === 'v1' || namespace === 'v2') namespace = '';
  if (DOCKER_HUB_HOSTS.has(host)) host = 'docker.io';
  return { host, namespace };
}

export interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

export interface AuthConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/**
 * Reads a docker config.json or containers auth.json. Missing → undefined.
 * Malformed → an error naming the file and position, never quoting content
 * (JSON.parse's own message quotes the text around the error, which may be a secret).
 */
export async function readAuthConfig(file: string): Promise<AuthConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw inputError(`cannot read credentials file ${file}: ${code ?? (err as Error).message}`, err);
  }
  if (text.trim() === '') return undefined; // docker treats an empty file as no config
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    const pos = /position (\d+)/.exec((err as Error).message);
    let where = '';
    if (pos) {
      const before = text.slice(0, Number(pos[1]));
      const line = before.split('\n').length;
      where = ` at line ${line}, column ${Number(pos[1]) - before.lastIndexOf('\n')}`;
    }
    throw new InvalidInputError(`credentials file ${file} is not valid JSON${where}; fix or remove it`);
  }
  const bad = (what: string) => new InvalidInputError(`credentials file ${file}: ${what}; fix or remove it`);
  if (!isObject(data)) throw bad('top level is not a JSON object');
  const config: AuthConfig = {};
  if (data.auths !== undefined) {
    if (!isObject(data.auths)) throw bad('"auths" is not an object');
    config.auths = {};
    for (const [key, entry] of Object.entries(data.auths)) {
      if (!isObject(entry)) throw bad(`auths["${key}"] is not an object`);
      const e: AuthEntry = {};
      for (const field of ['auth', 'username', 'password', 'identitytoken', 'registrytoken'] as const) {
        const v = entry[field];
        if (v === undefined || v === null) continue;
        if (typeof v !== 'string') throw bad(`auths["${key}"].${field} is not a string`);
        e[field] = v;
      }
      config.auths[key] = e;
    }
  }
  if (data.credHelpers !== undefined) {
    if (!isObject(data.credHelpers)) throw bad('"credHelpers" is not an object');
    config.credHelpers = {};
    for (const [key, helper] of Object.entries(data.credHelpers)) {
      if (typeof helper !== 'string') throw bad(`credHelpers["${key}"] is not a string`);
      config.credHelpers[key] = helper;
    }
  }
  if (data.credsStore !== undefined && data.credsStore !== null) {
    if (typeof data.credsStore !== 'string') throw bad('"credsStore" is not a string');
    config.credsStore = data.credsStore;
  }
  return config;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Keys of `record` that apply to the host (and repository), best match first. */
function matchingKeys(record: Record<string, unknown>, registryHost: string, repository: string | undefined): string[] {
  const host = canonicalHost(registryHost);
  const scored: { key: string; score: number; order: number }[] = [];
  let order = 0;
  for (const key of Object.keys(record)) {
    const k = parseKey(key);
    order++;
    if (k.host !== host) continue;
    let score: number;
    if (k.namespace) {
      // podman: the most specific namespace wins over a host-wide entry.
      if (!repository || (repository !== k.namespace && !repository.startsWith(`${k.namespace}/`))) continue;
      score = 1000 + k.namespace.length;
    } else if (key === registryHost) score = 3;
    else if (host === 'docker.io' && key === DOCKER_HUB_SERVER_URL) score = 2;
    else score = 1;
    scored.push({ key, score, order });
  }
  scored.sort((a, b) => b.score - a.score || a.order - b.order);
  return scored.map((s) => s.key);
}

async function lookupInConfig(
  config: AuthConfig,
  file: string,
  registryHost: string,
  repository: string | undefined,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Credential | undefined> {
  const host = canonicalHost(registryHost);
  if (config.credHelpers) {
    const key = matchingKeys(config.credHelpers, registryHost, repository)[0];
    if (key !== undefined) {
      // A host-specific helper is authoritative for that host in this file.
      return runCredentialHelper(config.credHelpers[key]!, helperServerURL(registryHost), {
        env,
        timeoutMs,
        context: `credHelpers["${key}"] in ${file}`,
      });
    }
  }
  if (config.auths) {
    for (const key of matchingKeys(config.auths, registryHost, repository)) {
      const cred = entryCredential(config.auths[key]!, `auths["${key}"] in ${file}`);
      if (cred) return cred;
    }
  }
  if (config.credsStore) {
    return runCredentialHelper(config.credsStore, helperServerURL(registryHost), {
      env,
      timeoutMs,
      context: `credsStore in ${file} (for ${host})`,
    });
  }
  return undefined;
}

function entryCredential(e: AuthEntry, where: string): Credential | undefined {
  if (e.registrytoken) return { registryToken: e.registrytoken };
  if (e.identitytoken) return { identityToken: e.identitytoken };
  if (e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new InvalidInputError(`${where}: "auth" is not base64 of "username:password"`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (e.username || e.password) return { username: e.username ?? '', password: e.password ?? '' };
  return undefined; // `{}`: docker's placeholder when the secret lives in credsStore
}

export interface HelperOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Where the helper was configured, for error messages. */
  context?: string;
}

/**
 * Runs `docker-credential-NAME get` with the server URL on stdin, as docker
 * does. "credentials not found" → undefined (anonymous). Output on success is
 * `{"ServerURL","Username","Secret"}`; Username `<token>` marks an identity token.
 */
export async function runCredentialHelper(name: string, serverURL: string, opts: HelperOptions = {}): Promise<Credential | undefined> {
  const env = opts.env ?? process.env;
  const program = `docker-credential-${name}`;
  const where = opts.context ? ` (configured as ${opts.context})` : '';
  // The name goes into a file name: refuse anything that could be a path.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new InvalidInputError(`invalid credential helper name "${name}"${where}`);
  const exe = await findOnPath(program, env.PATH ?? '');
  if (!exe) throw new InvalidInputError(`credential helper ${program} not found on PATH${where}; install it or remove it from the config`);

  const { code, signal, stdout, stderr, timedOut } = await new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
    timedOut: boolean;
  }>((resolve, reject) => {
    // Its own process group, so a timeout also ends anything the helper started
    // (a shell helper's children would otherwise hold the pipes open).
    const child = spawn(exe, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ code: null, signal: 'SIGKILL', stdout: '', stderr: '', timedOut });
    }, opts.timeoutMs ?? 60_000);
    child.stdout.on('data', (b: Buffer) => {
      if ((outLen += b.length) <= 1 << 20) out.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if ((errLen += b.length) <= 64 << 10) err.push(b);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new InvalidInputError(`cannot run credential helper ${exe}${where}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
    // A helper that exits without reading stdin makes the write fail with EPIPE; the exit status tells the story.
    child.stdin.on('error', () => {});
    child.stdin.end(serverURL);
  });

  if (timedOut) throw new InvalidInputError(`credential helper ${program} did not answer within ${opts.timeoutMs ?? 60_000} ms${where}`);
  if (code !== 0) {
    // docker-credential-helpers print their error on stdout; others use stderr.
    const message = `${stdout}\n${stderr}`;
    if (/credentials not found/i.test(message)) return undefined;
    const detail = firstLine(stderr) || firstLine(stdout);
    const status = code === null ? `killed by ${signal}` : `exit status ${code}`;
    throw new InvalidInputError(`credential helper ${program} failed for ${serverURL} (${status})${where}${detail ? `: ${detail}` : ''}`);
  }
  let reply: unknown;
  try {
    reply = JSON.parse(stdout);
  } catch {
    throw new InvalidInputError(`credential helper ${program} returned output that is not JSON for ${serverURL}${where}`);
  }
  if (!isObject(reply)) throw new InvalidInputError(`credential helper ${program} returned a non-object for ${serverURL}${where}`);
  const username = typeof reply.Username === 'string' ? reply.Username : '';
  const secret = typeof reply.Secret === 'string' ? reply.Secret : '';
  if (!username && !secret) return undefined;
  if (username === '<token>') return { identityToken: secret };
  return { username, password: secret };
}

function firstLine(s: string): string {
  const line = s.trim().split('\n')[0]?.trim() ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

async function findOnPath(program: string, path: string): Promise<string | undefined> {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** A description safe to log: who, never what secret. */
export function describeCredential(cred: Credential | undefined): string {
  if (!cred) return 'anonymous';
  if ('password' in cred) return `username "${cred.username}" with password`;
  if ('identityToken' in cred) return 'identity token';
  return 'registry token';
}

/**
 * Makes an accidental console.log / JSON.stringify / util.inspect of a
 * credential show its kind and not its secret. The properties stay plain and
 * enumerable for code that uses them.
 */
function protect<T extends Credential>(cred: T): T {
  const c = { ...cred } as T;
  const shown = () => `[Credential: ${describeCredential(c)}]`;
  Object.defineProperty(c, 'toJSON', { value: shown, enumerable: false });
  Object.defineProperty(c, inspect.custom, { value: shown, enumerable: false });
  return c;
}
