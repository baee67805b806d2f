// Digest and size grammar for everything that arrives from a registry, a bundle, a lock file or the
// cache. A leaf module: it imports nothing of ours, so every folder can use it.
//
// OCI image-spec descriptor.md: digest ::= algorithm ":" encoded, algorithm ::= component
// ([+._-] component)*, component ::= [a-z0-9]+, encoded ::= [a-zA-Z0-9=_-]+. ocisave verifies
// sha256 only, so anything else, well-formed or not, is refused before it names a request, a
// cache key or a path.
import { InvalidInputError } from '../util/errors.js';

const SHA256_RE = /^sha256:[a-f0-9]{64}$/;
const GRAMMAR_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export class InvalidDigestError extends InvalidInputError {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDigestError';
  }
}

/** `sha256:` and 64 lowercase hex digits: the only digests ocisave uses. */
export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && SHA256_RE.test(value);
}

/** `value` as a digest ocisave verifies, or an error naming `what` and why (bad grammar, other algorithm). */
export function checkDigest(value: unknown, what: string): string {
  if (isDigest(value)) return value;
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value) : String(value);
  if (typeof value === 'string' && GRAMMAR_RE.test(value) && !value.startsWith('sha256:')) {
    throw new InvalidDigestError(`${what}: digest ${shown} uses an algorithm ocisave does not verify (only sha256)`);
  }
  throw new InvalidDigestError(`${what}: ${shown} is not a digest (expected sha256:<64 lowercase hex>)`);
}

/** The 64 hex digits of a sha256 digest (checked). */
export function digestHex(digest: string, what = 'digest'): string {
  return checkDigest(digest, what).slice('sha256:'.length);
}

export class InvalidSizeError extends InvalidInputError {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidSizeError';
  }
}

/** A descriptor size: a non-negative safe integer, at most `max` when given. */
export function checkSize(value: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value === 'number' && Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER) {
    throw new InvalidSizeError(`${what}: size ${value} is past 2^53 bytes, more than any blob can be`);
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidSizeError(`${what}: size ${String(value)} is not a non-negative integer`);
  }
  if (value > max) throw new InvalidSizeError(`${what}: size ${value} is more than the ${max} bytes allowed`);
  return value;
}
