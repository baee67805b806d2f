// Docker-style reference parsing and normalisation.
// `ubuntu` → docker.io/library/ubuntu:latest; `localhost:5000/x` keeps its host;
// a digest pins the content (a tag given with it is kept only as a name).
import { isDigest } from './digest.js';
import { InvalidInputError } from '../util/errors.js';

export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';

const TAG_RE = /^[\w][\w.-]{0,127}$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
// The distribution grammar's domain: dot-separated components of letters, digits and inner '-', or a
// bracketed IPv6 address, then an optional numeric port. Anything else ('#', '?', '%', an empty port)
// would change the meaning of the URL the host is put in.
const DOMAIN_COMPONENT = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const HOST_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::([0-9]{1,5}))?$`);
/** Longest name, host included (distribution's NameTotalLengthMax). */
export const MAX_NAME_LENGTH = 255;

export class ReferenceError extends InvalidInputError {
  constructor(readonly input: string, reason: string) {
    super(`invalid reference "${quoteInput(input)}": ${reason}`);
  }
}

/** Input as quoted in a message: printable and at most 200 characters (a "line" of a binary file can be megabytes). */
export function quoteInput(input: string): string {
  const printable = input.replace(/\p{Cc}/gu, '?'); // control characters (C0, DEL, C1)
  return printable.length > 200 ? `${printable.slice(0, 200)}… (${input.length} characters)` : printable;
}

/** A first path component is a registry host when it has a dot or a port, or is `localhost`. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || /[A-Z]/.test(component);
}

export function parseReference(input: string): Reference {
  const text = input.trim();
  if (!text) throw new ReferenceError(input, 'empty');
  if (/\s/.test(text)) throw new ReferenceError(input, 'contains whitespace');

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw new ReferenceError(input, `digest "${quoteInput(digest)}" is not sha256:<64 hex>`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new ReferenceError(input, `tag "${quoteInput(tag)}" is not valid`);
  }

  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  if (parts.length > 1 && looksLikeHost(parts[0]!)) registry = parts.shift()!;
  const host = HOST_RE.exec(registry);
  if (!host || Number(host[1] ?? 1) < 1 || Number(host[1] ?? 1) > 65535) throw new ReferenceError(input, `registry host "${quoteInput(registry)}" is not a host name or [IPv6], with an optional port 1-65535`);
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !COMPONENT_RE.test(p))) {
    throw new ReferenceError(input, `repository "${quoteInput(parts.join('/'))}" must be lowercase components separated by "/"`);
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const nameLength = registry.length + 1 + parts.join('/').length;
  if (nameLength > MAX_NAME_LENGTH) throw new ReferenceError(input, `name is ${nameLength} characters long; at most ${MAX_NAME_LENGTH} are allowed`);

  if (!tag && !digest) tag = 'latest';
  return { registry, repository: parts.join('/'), tag, digest };
}

/** Full name: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag) s += `:${ref.tag}`;
  if (ref.digest) s += `@${ref.digest}`;
  return s;
}

/** A tag as the distribution grammar allows it: `[\w][\w.-]{0,127}`. */
export function isTag(s: string): boolean {
  return TAG_RE.test(s);
}
