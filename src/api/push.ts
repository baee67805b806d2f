// push(): a saved bundle (registry layout, OCI layout or archive, docker-save tar) into a registry,
// digests unchanged.
import type { PushSummary } from '../push/push.js';
import { parseTarget } from '../push/target.js';
import { pushEvents, type EventHandler } from './events.js';
import { credentialsOf, netLimitsOf, networkOf, type RegistryOptions } from './options.js';
import { SCHEMAS, versioned } from './schema.js';

export interface PushRequest extends RegistryOptions {
  /** Bundle directory or archive. */
  bundle: string;
  /** HOST[:PORT][/prefix] */
  to: string;
  /** Only these bundle repositories (default: all). */
  repository?: string[];
  /** Blob uploads in flight at once (default 4). */
  jobs?: number;
  /** Bytes per upload chunk (PATCH); default 16 MiB. */
  chunkSize?: number;
  /** Seconds the whole push may spend on failed attempts and waits (default 300). */
  retryBudget?: number;
  onEvent?: EventHandler;
}

export type PushResult = { schema: typeof SCHEMAS.push } & PushSummary;

/** Pushes the bundle; failures per repository are listed in the result, not thrown. */
export async function push(r: PushRequest): Promise<PushResult> {
  const target = parseTarget(r.to);
  const { push: pushBundle } = await import('../push/push.js');
  const summary = await pushBundle(r.bundle, {
    to: r.to,
    plainHttp: r.plainHttp,
    ...networkOf(r),
    jobs: r.jobs,
    chunkBytes: r.chunkSize,
    only: r.repository,
    limits: netLimitsOf(r),
    retryBudgetMs: r.retryBudget === undefined ? undefined : Math.round(r.retryBudget * 1000),
    credentials: credentialsOf(r, [target.registry]),
    onEvent: pushEvents(r.onEvent),
  });
  return versioned(SCHEMAS.push, summary);
}
