// Registry failures with a kind the CLI can turn into one clear line, never carrying a secret, and a
// code: the registry's own distribution error code when its answer had one (OCI distribution spec,
// "Error Codes": MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN, DENIED, TOOMANYREQUESTS...), else the
// local code of the kind (src/util/errors.ts).
import { OcisaveError, type ErrorCode } from '../util/errors.js';

export type RegistryErrorKind =
  | 'not-found'
  | 'unauthorized'
  | 'denied'
  | 'unreachable'
  | 'bad-response'
  | 'unsupported'
  | 'digest-mismatch'
  /** Would send credentials in clear to a host the user did not ask plain HTTP for. */
  | 'insecure'
  | 'http';

const KIND_CODES: Record<RegistryErrorKind, ErrorCode> = {
  'not-found': 'NOT_FOUND',
  unauthorized: 'UNAUTHORIZED',
  denied: 'DENIED',
  unreachable: 'UNREACHABLE',
  'bad-response': 'BAD_RESPONSE',
  unsupported: 'UNSUPPORTED',
  'digest-mismatch': 'DIGEST_MISMATCH',
  insecure: 'INSECURE',
  http: 'UNKNOWN',
};

/** The spec's code for a status when the body named none (a 429 body is not read: it is retried). */
const STATUS_CODES: Record<number, ErrorCode> = { 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'NOT_FOUND', 429: 'TOOMANYREQUESTS' };

export class RegistryError extends OcisaveError {
  constructor(
    readonly kind: RegistryErrorKind,
    message: string,
    readonly status?: number,
    /** The registry's distribution code (parseDistributionError), or a local code more precise than the kind's. */
    code?: ErrorCode,
  ) {
    super(code ?? (kind === 'http' && status ? STATUS_CODES[status] : undefined) ?? KIND_CODES[kind], message);
    this.name = 'RegistryError';
  }
}

export interface DistributionError {
  /** Upper case, [A-Z_], at most MAX_CODE_LENGTH characters; undefined when the body had none such. */
  code?: string;
  /** The registry's message: one line of printable text, at most MAX_DETAIL_LENGTH characters. */
  message?: string;
}

/** Bytes of a body looked at: distribution's error bodies are a few hundred bytes; an answer is untrusted. */
export const MAX_ERROR_BODY = 16 * 1024;
/** The longest code in the spec is MANIFEST_BLOB_UNKNOWN (21); anything past 64 is not a code. */
export const MAX_CODE_LENGTH = 64;
export const MAX_DETAIL_LENGTH = 200;
const CODE_RE = new RegExp(`^[A-Z][A-Z_]{0,${MAX_CODE_LENGTH - 1}}$`);

/**
 * The first error of a distribution error body, `{"errors": [{"code", "message", "detail"}]}`,
 * read from at most MAX_ERROR_BODY bytes. A body cut there, or not JSON, yields nothing; a code
 * that is not upper-case [A-Z_] is dropped (it would end up in JSON output and in branches).
 */
export function parseDistributionError(body: Buffer | string | undefined): DistributionError {
  if (!body || body.length === 0) return {};
  const text = (typeof body === 'string' ? body.slice(0, MAX_ERROR_BODY) : body.subarray(0, MAX_ERROR_BODY).toString('utf8')).trim();
  if (!text.startsWith('{')) return {};
  let first: unknown;
  try {
    first = (JSON.parse(text) as { errors?: unknown })?.errors;
  } catch {
    return {};
  }
  const e = Array.isArray(first) ? (first[0] as { code?: unknown; message?: unknown } | undefined) : undefined;
  if (!e || typeof e !== 'object') return {};
  const code = typeof e.code === 'string' && CODE_RE.test(e.code) ? e.code : undefined;
  const message = typeof e.message === 'string' ? oneLine(e.message) : undefined;
  return { ...(code && { code }), ...(message && { message }) };
}

/** `code: message` of a distribution error body, for one-line reports; else the body's start as text. */
export function errorDetail(body: Buffer): string {
  const e = parseDistributionError(body);
  if (e.code || e.message) return `${e.code ?? ''}${e.message ? `${e.code ? ': ' : ''}${e.message}` : ''}`;
  return oneLine(body.subarray(0, MAX_DETAIL_LENGTH * 4).toString('utf8'));
}

/** Printable, one line, at most MAX_DETAIL_LENGTH characters. */
function oneLine(text: string): string {
  const flat = text.replace(/\p{Cc}+/gu, ' ').trim();
  return flat.length > MAX_DETAIL_LENGTH ? `${flat.slice(0, MAX_DETAIL_LENGTH)}…` : flat;
}

/** A RegistryError for an answer with `status` and `body`: the code the body names, else the status's. */
export function registryAnswerError(kind: RegistryErrorKind, message: string, status: number, body?: Buffer): RegistryError {
  return new RegistryError(kind, message, status, parseDistributionError(body).code);
}
