// A failed write as one line that names the errno and the file: on a full disk the kernel first
// returns a short count (401 of 1048576 bytes), and only the next write says ENOSPC. Imports only
// the leaf src/util (the download worker and the linkers share it).
import { constants } from 'node:os';
import { OcisaveError } from '../util/errors.js';

/** Errnos that mean "the disk refused the bytes", with the words strerror(3) uses. */
const DISK_ERRORS: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
};

/** Its code is the errno (ENOSPC, EDQUOT, EFBIG, EROFS, EIO). */
export class WriteFailure extends OcisaveError {
  constructor(
    code: string,
    readonly path: string,
    cause: unknown,
  ) {
    super(code, `${DISK_ERRORS[code] ?? code} (${code}) writing ${path}`, { cause });
    this.name = 'WriteFailure';
  }
}

/** An errno's name: node gives strings (ENOSPC), lmdb-js the number (28). */
function errnoName(code: unknown): string | undefined {
  if (typeof code === 'string') return code;
  if (typeof code === 'number') return Object.entries(constants.errno).find(([, n]) => n === code)?.[0];
  return undefined;
}

/** `err` as a WriteFailure naming `path` when the disk refused a write; any other error unchanged. */
export function describeWriteError(err: unknown, path: string): unknown {
  if (err instanceof WriteFailure) return err;
  const code = errnoName((err as { code?: unknown } | null)?.code);
  return code && code in DISK_ERRORS ? new WriteFailure(code, path, err) : err;
}

/**
 * Write all of `chunks` at `position`: a short count is followed by another write of the rest,
 * which either succeeds or fails with the errno that explains it (ENOSPC on a full disk).
 */
export async function writeFully(
  fh: { writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }> },
  chunks: Buffer[],
  position: number,
  path: string,
): Promise<void> {
  let rest = chunks;
  let at = position;
  let left = chunks.reduce((n, c) => n + c.length, 0);
  try {
    while (left > 0) {
      const { bytesWritten } = await fh.writev(rest, at);
      // A regular file never answers 0 without an errno; guard against a loop anyway.
      if (bytesWritten === 0) throw new Error(`short write: 0 of ${left} bytes writing ${path}`);
      left -= bytesWritten;
      at += bytesWritten;
      rest = left > 0 ? [Buffer.concat(rest).subarray(bytesWritten)] : [];
    }
  } catch (err) {
    throw describeWriteError(err, path);
  }
}

/** The error behind a failed lmdb-js commit: it rejects with "Commit failed" and keeps the errno in a commitError promise. */
export async function commitCause(err: unknown): Promise<unknown> {
  const commitError = (err as { commitError?: Promise<unknown> } | null)?.commitError;
  return commitError ? commitError.then(() => err, (cause: unknown) => cause) : err;
}
