// Docker-style reference parsing and normalisation.
// `ubuntu` → docker.io/library/ubuntu:latest; `localhost:5000/x` keeps its host;
// a digest pins the content (a tag given with it is kept only as a name).
import { InvalidInputError } from '../util/errors.js';

export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

export class ReferenceError extends InvalidInputError {
  constructor(readonly input: string, reason: string) {
    super(`invalid reference "${quoteInput(input)}": ${reason}`);
  }
}

/** Input as quoted in a message: printable and at most 200 characters (a "line" of a binary file can be megabytes). */
export function quoteInput(input: string): string {
  const printable = input.replace(/[\x00-\x1f\x7f]/g, '?');
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
    if (!DIGEST_RE.test(digest)) throw new ReferenceError(input, `digest "${quoteInput(digest)}" is not sha256:<64 hex>`);
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
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (parts.length === 0 || parts.some((p) => !COMPONENT_RE.test(p))) {
    throw new ReferenceError(input, `repository "${quoteInput(parts.join('/'))}" must be lowercase components separated by "/"`);
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');

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

/** Short name as `docker save` writes in RepoTags: `repo:tag`, hub images without the docker.io/library/ prefix. */
export function familiarName(ref: Reference): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (ref.registry === DOCKER_HUB) name = ref.repository.replace(/^library\//, '');
  return name;
}

/** A tag as the distribution grammar allows it: `[\w][\w.-]{0,127}`. */
export function isTag(s: string): boolean {
  return TAG_RE.test(s);
}

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}
