// mirror(): registry to registry through the shared cache, each image pushed as soon as its blobs
// are cached; planMirror(): the same request, compared with the target, nothing sent.
import type { MirrorSummary } from '../mirror/mirror.js';
import type { MirrorPlan } from '../mirror/plan.js';
import { parseTarget } from '../push/target.js';
import { pushEvents, stamp } from './events.js';
import { gatherInputs, type InputOptions } from './inputs.js';
import { credentialsOf, fetchOptionsOf, platformsOf, type FetchRequest } from './options.js';
import { DEFAULT_PLATFORMS } from './platforms.js';
import { SCHEMAS, versioned } from './schema.js';
import { UsageError } from '../util/errors.js';

export interface MirrorRequest extends FetchRequest, InputOptions {
  /** HOST[:PORT][/prefix] */
  to: string;
  /** Keep each source host in the target repository path. */
  scoped?: boolean;
  /** Blob uploads in flight at once (default 4). */
  pushJobs?: number;
  /** Bytes per upload chunk (PATCH); default 16 MiB. */
  chunkSize?: number;
  /** Seconds the pushes may spend on failed attempts and waits (default 300). */
  retryBudget?: number;
}

export type MirrorResult = { schema: typeof SCHEMAS.mirror } & MirrorSummary & {
  /** Set when --shard left this process no input: nothing was mirrored. */
  shardEmpty?: { index: number; count: number; inputs: number };
};
export type MirrorPlanResult = { schema: typeof SCHEMAS.mirrorPlan } & MirrorPlan;

async function mirrorOptions(r: MirrorRequest) {
  const target = parseTarget(r.to);
  const g = await gatherInputs(r);
  if (g.total === 0) throw new UsageError('nothing to mirror: give references as arguments, -f FILE or --lock FILE');
  const empty = !!g.shard && g.refs.length === 0 && g.tagSets.length === 0;
  if (!empty) for (const message of g.collected.warnings) r.onEvent?.(stamp({ type: 'warning', message }));
  // A lock's own platforms are the default for a mirror from it, as for save.
  const platforms = platformsOf(r.platforms, g.lockPlatform ?? DEFAULT_PLATFORMS);
  const credentials = credentialsOf(r, [...g.registries, target.registry], g.collected.credentials);
  const opts = {
    ...fetchOptionsOf(r, platforms, credentials),
    to: r.to,
    scoped: r.scoped,
    tagSets: g.tagSets,
    hostOptions: g.collected.hostOptions,
    retryBudgetMs: r.retryBudget === undefined ? undefined : Math.round(r.retryBudget * 1000),
    uploadJobs: r.pushJobs,
    chunkBytes: r.chunkSize,
    onPush: pushEvents(r.onEvent),
  };
  return { g, opts, empty };
}

async function nothingMirrored(to: string): Promise<MirrorSummary> {
  const { emptyPushSummary } = await import('../push/push.js');
  const p = emptyPushSummary(parseTarget(to), 'mirror');
  const none = { blobs: 0, bytes: 0 };
  const tags = { new: 0, moved: 0, unchanged: 0 };
  return { target: p.target, images: 0, references: [], tags, moved: [], manifests: p.manifests, blobs: { ...p.blobs, transferred: 0 }, retagged: [], source: { downloaded: none, reused: none }, failures: [], seconds: 0, peakRssBytes: 0 };
}

export async function mirror(r: MirrorRequest): Promise<MirrorResult> {
  const { g, opts, empty } = await mirrorOptions(r);
  if (empty) {
    return { ...versioned(SCHEMAS.mirror, await nothingMirrored(r.to)), shardEmpty: { index: g.shard!.index, count: g.shard!.count, inputs: g.total } };
  }
  const { mirror: mirrorImages } = await import('../mirror/mirror.js');
  return versioned(SCHEMAS.mirror, await mirrorImages(g.refs, opts));
}

export async function planMirror(r: MirrorRequest): Promise<MirrorPlanResult> {
  const { g, opts } = await mirrorOptions(r);
  const { planMirror: plan } = await import('../mirror/plan.js');
  return versioned(SCHEMAS.mirrorPlan, await plan(g.refs, opts));
}
