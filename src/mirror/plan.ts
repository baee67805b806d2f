// `mirror --dry-run`: resolve every input (manifests only, nothing downloaded), then ask the target
// with HEAD what it lacks: per image, where its tag points now, and which of its manifests and
// blobs would be sent. Nothing is written anywhere.
import { resolveGraph, type FetchOptions } from '../engine/pipeline.js';
import { mapLimit } from '../util/limit.js';
import { checkLayoutNames } from '../link/registry.js';
import { ping, targetClient } from '../push/push.js';
import { parseTarget, targetRepository } from '../push/target.js';
import { PushSession } from '../push/upload.js';
import { blobsOf, leafManifests, walkNodes, type Failure } from '../resolve/graph.js';
import { firstRepository, mirrorRepository } from './mirror.js';
import { tagState, targetManifest, type TagState } from './target-state.js';

export interface PlannedImage {
  source: string;
  /** `host/repo:tag` or `host/repo@digest` */
  target: string;
  digest: string;
  /** Where the tag stands at the target; `digest` for digest-only inputs. */
  tag: TagState | 'digest';
  from?: string;
  manifests: { total: number; missing: number };
  blobs: { total: number; missing: number; missingBytes: number };
}

export interface MirrorPlan {
  dryRun: true;
  target: string;
  images: PlannedImage[];
  blobs: { missing: number; missingBytes: number };
  failures: Failure[];
}

// HEAD requests in flight at once against the target.
const CHECKS = 8;

export async function planMirror(inputs: string[], opts: FetchOptions & { to: string; scoped?: boolean; retryBudgetMs?: number }): Promise<MirrorPlan> {
  const target = parseTarget(opts.to);
  const client = targetClient(target, opts, CHECKS + 4);
  const session = new PushSession(client, target.registry);
  const plan: MirrorPlan = { dryRun: true, target: target.prefix ? `${target.registry}/${target.prefix}` : target.registry, images: [], blobs: { missing: 0, missingBytes: 0 }, failures: [] };
  try {
    await ping(session, targetRepository(target, firstRepository([...inputs, ...(opts.tagSets ?? []).map((t) => t.repository)], 'library/ocisave')));
    const resolved = await resolveGraph(inputs, { ...opts, keepGoing: true, checkInputs: (parsed) => checkLayoutNames(parsed, !!opts.scoped) });
    try {
      plan.failures.push(...resolved.graph.failures);
      /** Blobs counted missing already, by target repository and digest: each counts once. */
      const counted = new Set<string>();
      plan.images = await mapLimit(resolved.graph.images, 2, async (image) => {
        const { repo } = mirrorRepository(target, image.ref, !!opts.scoped);
        const where = `${target.registry}/${repo}`;
        const digest = image.root.digest;
        const current = image.ref.tag ? await targetManifest(session, repo, image.ref.tag) : undefined;
        const nodes = [...walkNodes(image.root)];
        const manifestMissing = await mapLimit(nodes, CHECKS, async (n) => (await targetManifest(session, repo, n.digest)) === undefined);
        const blobs = [...new Map(leafManifests(image.root).flatMap(blobsOf).map((d) => [d.digest, d.size])).entries()];
        const blobMissing = await mapLimit(blobs, CHECKS, async ([d]) => !(await session.blobExists(repo, d)));
        const missing = blobs.filter((_, i) => blobMissing[i]);
        for (const [d, size] of missing) {
          if (counted.has(`${repo}@${d}`)) continue;
          counted.add(`${repo}@${d}`);
          plan.blobs.missing++;
          plan.blobs.missingBytes += size;
        }
        const state = image.ref.tag ? tagState(current, digest) : 'digest';
        return {
          source: image.input,
          target: image.ref.tag ? `${where}:${image.ref.tag}` : `${where}@${digest}`,
          digest,
          tag: state,
          ...(state === 'moved' ? { from: current } : {}),
          manifests: { total: nodes.length, missing: manifestMissing.filter(Boolean).length },
          blobs: { total: blobs.length, missing: missing.length, missingBytes: missing.reduce((n, [, s]) => n + s, 0) },
        };
      });
    } finally {
      await resolved.close();
    }
  } finally {
    await client.close();
  }
  return plan;
}
