// skopeo sync's YAML source (`skopeo sync --src yaml FILE`, skopeo-sync(1)), so a skopeo sync user
// switches by changing only the command:
//
//   registry.example.com:            # a registry host[:port]
//     images:                        # repository → tags or digests; an empty list: every tag
//       busybox: []
//       redis: ["1.0", "sha256:…"]
//     images-by-tag-regex:           # repository → regular expression over its tags
//       nginx: ^1\.13\.[12]-alpine-perl$
//     images-by-semver:              # repository → semver range over its tags
//       alpine: ">= 3.12.0"
//     credentials: {username: john, password: secret}   # for this registry only
//     tls-verify: true               # false: do not verify the server certificate
//     cert-dir: /home/john/certs     # certs.d-style directory for this registry
//
// Credentials go to this registry's credential lookup and are never printed; tls-verify and
// cert-dir become this registry's HostOptions.
import { isMap, isScalar, isSeq, type Document, type YAMLMap } from 'yaml';
import type { Credential } from '../registry/credentials.js';
import type { HostOptionsMap } from '../registry/host-options.js';
import { parseReference } from '../ref/reference.js';
import { checkSelector, type TagSetRequest } from '../resolve/tags.js';
import { deref, type ParsedYaml } from './kube.js';
import { InvalidInputError } from '../util/errors.js';

export interface SyncYamlInputs {
  refs: { ref: string; source: string }[];
  tagSets: TagSetRequest[];
  /** Registry (as references name it: docker.io, quay.io, 127.0.0.1:5000) → its credentials. */
  credentials: Map<string, Credential>;
  hostOptions: HostOptionsMap;
}

const IMAGE_KEYS = ['images', 'images-by-tag-regex', 'images-by-semver'];
const KNOWN_KEYS = new Set([...IMAGE_KEYS, 'credentials', 'tls-verify', 'cert-dir']);

/** A single mapping of registries to mappings, at least one of which names images, and no Kubernetes keys. */
export function isSyncYaml(parsed: ParsedYaml): boolean {
  if (parsed.docs.length !== 1) return false;
  const doc = parsed.docs[0]!;
  const root = deref(doc.contents, doc);
  if (!isMap(root) || root.items.length === 0) return false;
  let names = false;
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (key === 'apiVersion' || key === 'kind') return false;
    const value = deref(pair.value, doc);
    if (!isMap(value)) return false;
    if (value.items.some((p) => isScalar(p.key) && IMAGE_KEYS.includes(String(p.key.value)))) names = true;
  }
  return names;
}

export function readSyncYaml(parsed: ParsedYaml, file: string): SyncYamlInputs {
  const doc = parsed.docs[0]!;
  const root = deref(doc.contents, doc) as YAMLMap;
  const out: SyncYamlInputs = { refs: [], tagSets: [], credentials: new Map(), hostOptions: {} };
  for (const pair of root.items) {
    const host = String((pair.key as { value: unknown }).value);
    const at = (what: string) => `${file}: ${host}${what ? ` ${what}` : ''}`;
    const registry = registryOf(host, at(''));
    const section = deref(pair.value, doc) as YAMLMap;
    for (const item of section.items) {
      const key = isScalar(item.key) ? String(item.key.value) : '';
      if (!KNOWN_KEYS.has(key)) throw new InvalidInputError(`${at('')}: unknown key ${JSON.stringify(key)} (skopeo sync knows ${[...KNOWN_KEYS].join(', ')})`);
      const value = deref(item.value, doc);
      if (key === 'images') readImages(value, doc, host, at, out);
      else if (key === 'images-by-tag-regex' || key === 'images-by-semver') readRules(key, value, doc, host, at, out);
      else if (key === 'credentials') out.credentials.set(registry, readCredentials(value, doc, at('credentials')));
      else if (key === 'tls-verify') (out.hostOptions[registry] ??= {}).tlsVerify = readBool(value, at('tls-verify'));
      else (out.hostOptions[registry] ??= {}).certDir = readString(value, at('cert-dir'));
    }
  }
  return out;
}

/** The registry as references name it (`index.docker.io` → docker.io); the host must be one. */
function registryOf(host: string, where: string): string {
  if (!/^[A-Za-z0-9.-]+(:\d+)?$|^\[[0-9a-fA-F:]+\](:\d+)?$/.test(host)) throw new InvalidInputError(`${where}: not a registry host[:port]`);
  return parseReference(`${host}/x`).registry;
}

function readImages(value: unknown, doc: Document, host: string, at: (w: string) => string, out: SyncYamlInputs): void {
  if (value === null || (isScalar(value) && value.value === null)) return;
  if (!isMap(value)) throw new InvalidInputError(`${at('images')}: expected a mapping of repository → list of tags or digests`);
  for (const pair of value.items) {
    const repo = String((pair.key as { value: unknown }).value);
    const where = at(`images ${repo}`);
    const list = deref(pair.value, doc);
    const entries = list === null || (isScalar(list) && list.value === null) ? [] : isSeq(list) ? list.items.map((i) => readString(deref(i, doc), where)) : undefined;
    if (!entries) throw new InvalidInputError(`${where}: expected a list of tags or digests ([] for every tag)`);
    if (entries.length === 0) {
      out.tagSets.push({ repository: `${host}/${repo}`, selector: {}, source: where });
      continue;
    }
    for (const entry of entries) {
      const ref = `${host}/${repo}${entry.startsWith('sha256:') ? '@' : ':'}${entry}`;
      out.refs.push({ ref, source: where });
    }
  }
}

function readRules(key: string, value: unknown, doc: Document, host: string, at: (w: string) => string, out: SyncYamlInputs): void {
  if (!isMap(value)) throw new InvalidInputError(`${at(key)}: expected a mapping of repository → ${key === 'images-by-semver' ? 'semver range' : 'regular expression'}`);
  for (const pair of value.items) {
    const repo = String((pair.key as { value: unknown }).value);
    const where = at(`${key} ${repo}`);
    const rule = readString(deref(pair.value, doc), where);
    const selector = key === 'images-by-semver' ? { semver: rule } : { regex: rule };
    checkSelector(selector, where);
    out.tagSets.push({ repository: `${host}/${repo}`, selector, source: where });
  }
}

function readCredentials(value: unknown, doc: Document, where: string): Credential {
  if (!isMap(value)) throw new InvalidInputError(`${where}: expected username and password`);
  const get = (k: string) => {
    const pair = value.items.find((p) => isScalar(p.key) && p.key.value === k);
    return pair ? readString(deref(pair.value, doc), `${where} ${k}`) : undefined;
  };
  const username = get('username');
  const password = get('password');
  // The values are never part of a message.
  if (username === undefined || password === undefined) throw new InvalidInputError(`${where}: needs both username and password`);
  return { username, password };
}

function readString(node: unknown, where: string): string {
  if (isScalar(node) && typeof node.value === 'string') return node.value;
  // `- 1.10` is the tag "1.10", not the number 1.1: the text as written.
  if (isScalar(node) && typeof node.value === 'number') return node.source ?? String(node.value);
  throw new InvalidInputError(`${where}: expected a string`);
}

function readBool(node: unknown, where: string): boolean {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  throw new InvalidInputError(`${where}: expected true or false`);
}
