// verify(): re-hash every blob of a saved bundle and follow every link, offline.
import type { VerifyReport } from '../bundle/verify.js';
import { SCHEMAS, versioned } from './schema.js';

export interface VerifyRequest {
  /** Bundle directory or archive. */
  bundle: string;
  /** The base bundle of a delta (save --since): blobs it holds count as present. */
  since?: string;
  /** Files hashed at once (default 4). */
  jobs?: number;
}

export type VerifyResult = { schema: typeof SCHEMAS.verify } & VerifyReport;

/** The report; `ok` is false when anything is missing or corrupt. */
export async function verify(r: VerifyRequest): Promise<VerifyResult> {
  const { verifyBundle } = await import('../bundle/verify.js');
  return versioned(SCHEMAS.verify, await verifyBundle(r.bundle, { since: r.since, jobs: r.jobs }));
}
