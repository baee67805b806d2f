// Errors with a stable code, so that callers branch on `err.code` (or the class), never on message
// text: containerd's errdefs and npm cacache (EINTEGRITY, EBADSIZE) do the same. Leaf module: it
// imports nothing of ours, so every folder (and the download workers) can use it.
//
// A code is one of LOCAL_CODES, an errno the disk answered with (ENOSPC, EDQUOT, EFBIG, EROFS,
// EIO), or a registry's own distribution error code (MANIFEST_UNKNOWN, NAME_UNKNOWN...; see
// src/registry/errors.ts). README.md, "Errors", lists them with their exit statuses.

export const LOCAL_CODES = [
  /** A flag or argument the command cannot take (exit 2). */
  'USAGE',
  /** A bad reference, digest, size, platform, or a file (image list, lock, YAML, bundle) that cannot be used. */
  'INVALID_INPUT',
  /** What was asked for does not exist (a tag, a manifest, a blob, a file), and no registry code says more. */
  'NOT_FOUND',
  /** Bytes that do not hash to the digest that names them. */
  'DIGEST_MISMATCH',
  /** More or fewer bytes than the descriptor says. */
  'SIZE_MISMATCH',
  /** The registry did not answer in time, or answered slower than --speed-limit. */
  'TIMEOUT',
  /** Ctrl-C, or cancelled because another part failed (no --keep-going). */
  'INTERRUPTED',
  /** No connection to the registry (refused, reset, DNS, TLS, proxy). */
  'UNREACHABLE',
  /** Refused to send credentials in clear text. */
  'INSECURE',
  /** A budget was passed (bytes, entries, depth, tags, pages): the input is refused whole. */
  'LIMIT',
  /** A registry answer that is not what the protocol allows (not JSON, no digest, a loop). */
  'BAD_RESPONSE',
  /** A media type or manifest schema ocisave does not handle. */
  'UNSUPPORTED',
  /** A cache or bundle file that is not what it claims (replaced, a link, damaged). */
  'CORRUPT',
  /** Another process holds the blob's download lock (internal to the scheduler: it waits). */
  'BUSY',
  /** None of the above (the message says what). */
  'UNKNOWN',
] as const;

export type LocalCode = (typeof LOCAL_CODES)[number];
/** A local code, an errno, or a registry's distribution code (upper case, checked when parsed). */
export type ErrorCode = LocalCode | (string & {});

export class OcisaveError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'OcisaveError';
  }
}

/** A flag or argument the command cannot take: the CLI exits 2. */
export class UsageError extends OcisaveError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('USAGE', message, options);
    this.name = 'UsageError';
  }
}

/** A reference, digest, size, platform or input file that cannot be used. */
export class InvalidInputError extends OcisaveError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_INPUT', message, options);
    this.name = 'InvalidInputError';
  }
}

/** The code of any thrown value: an OcisaveError's own, NOT_FOUND for a missing file (ENOENT), else `fallback`. */
export function codeOf(err: unknown, fallback: ErrorCode = 'UNKNOWN'): ErrorCode {
  if (err instanceof OcisaveError) return err.code;
  return (err as { code?: unknown } | null)?.code === 'ENOENT' ? 'NOT_FOUND' : fallback;
}

/** `message` about `err` (which it names as its cause), keeping err's code; INVALID_INPUT when it has none. */
export function inputError(message: string, err: unknown): OcisaveError {
  return new OcisaveError(codeOf(err, 'INVALID_INPUT'), message, { cause: err });
}

/** The HTTP status an error carries (a registry's answer), if any. */
export function statusOf(err: unknown): number | undefined {
  const status = (err as { status?: unknown } | null)?.status;
  return err instanceof OcisaveError && typeof status === 'number' ? status : undefined;
}

/** The fields a report (a JSON failure) gives an error: its message, its code, the registry's status. */
export function reportOf(err: unknown): { error: string; code: ErrorCode; status?: number } {
  const status = statusOf(err);
  return { error: err instanceof Error ? err.message : String(err), code: codeOf(err), ...(status !== undefined && { status }) };
}
