// TLS material for one registry host, found as docker and containers/image find it
// (containers-certs.d(5)): a directory named HOST[:PORT] under each certs.d root, first found wins;
// in it `*.crt` are CA certificates (added to the system's), `NAME.cert` + `NAME.key` a client
// certificate pair. `--cert-dir DIR` (skopeo) names the directory itself and replaces the lookup.
// A directory that cannot be used throws CertDirError (net-errors.ts): never a reason to try plain HTTP.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { CertDirError } from './net-errors.js';

/** Where docker (/etc/docker/certs.d) and podman/skopeo (/etc/containers/certs.d) keep them. */
export const DEFAULT_CERTS_D_ROOTS = ['/etc/containers/certs.d', '/etc/docker/certs.d'];

/**
 * Replaces DEFAULT_CERTS_D_ROOTS: colon-separated roots (tests, and installs that keep certs.d
 * elsewhere). Documented in the README's Registries section.
 */
export const CERTS_D_ENV = 'OCISAVE_CERTS_D';

export function certsDRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const v = env[CERTS_D_ENV];
  return v ? v.split(':').filter(Boolean) : DEFAULT_CERTS_D_ROOTS;
}

export interface TlsMaterial {
  /** System roots plus the directory's CAs; undefined when it has none (Node's defaults apply). */
  ca?: string[];
  cert?: string;
  key?: string;
  /** The directory they came from, for messages. */
  dir?: string;
}

/** Certificate files are small; a bigger one is not a certificate (bounds what is read). */
const MAX_CERT_FILE_BYTES = 1024 * 1024;

function readSmall(path: string): string {
  if (statSync(path).size > MAX_CERT_FILE_BYTES) throw new CertDirError(`${path}: larger than ${MAX_CERT_FILE_BYTES} bytes, not a certificate`);
  return readFileSync(path, 'utf8');
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The certs.d directory for `host` (host[:port]), or undefined. */
export function findCertDir(host: string, roots: string[]): string | undefined {
  for (const root of roots) {
    const dir = join(root, host);
    if (isDir(dir)) return dir;
  }
  return undefined;
}

/** The CAs and client pair in `dir` (files sorted by name; the first complete pair is used). */
export function readCertDir(dir: string): TlsMaterial {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    throw new CertDirError(`certificate directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const cas = names.filter((n) => n.endsWith('.crt')).map((n) => readSmall(join(dir, n)));
  const out: TlsMaterial = { dir };
  if (cas.length) out.ca = [...rootCertificates, ...cas];
  for (const n of names.filter((x) => x.endsWith('.cert'))) {
    const keyName = `${n.slice(0, -'.cert'.length)}.key`;
    if (!names.includes(keyName)) throw new CertDirError(`certificate directory ${dir}: client certificate ${n} has no ${keyName}`);
    out.cert ??= readSmall(join(dir, n));
    out.key ??= readSmall(join(dir, keyName));
  }
  for (const n of names.filter((x) => x.endsWith('.key'))) {
    if (!names.includes(`${n.slice(0, -'.key'.length)}.cert`)) throw new CertDirError(`certificate directory ${dir}: key ${n} has no matching .cert`);
  }
  return out;
}
