// --with-signatures: what signs, attests or refers to the saved manifests, saved alongside them.
//  - cosign's tag scheme: `sha256-<hex>.sig`, `.att`, `.sbom` in the same repository;
//  - OCI 1.1 referrers: `GET /v2/NAME/referrers/DIGEST` (an index of referring manifests), and the
//    spec's fallback for registries without that API, an index tagged `sha256-<hex>`.
// Every manifest of a saved image is a subject: the top one and each per-platform one (cosign
// --recursive signs those). What is found becomes extra ResolvedImages in the graph — tagged where
// the registry tags them — so every output format saves them like any image.
import { formatReference, type Reference } from '../ref/reference.js';
import type { RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import type { EngineEvents } from '../util/events.js';
import { mapLimit } from '../util/limit.js';
import { walkNodes, type BlobNeed, type Descriptor, type ImageGraph } from './graph.js';
import { MT } from '../util/mediatypes.js';
import { isDigest } from '../ref/digest.js';
import type { ResolveInput, Resolver } from './resolve.js';

export const COSIGN_SUFFIXES = ['sig', 'att', 'sbom'] as const;

/** `sha256:<hex>` → `sha256-<hex>`: the tag cosign and the referrers fallback derive from a digest. */
export function digestTag(digest: string): string {
  return digest.replace(':', '-');
}

/** Every tag that may hold something about `digest`. */
export function signatureTags(digest: string): string[] {
  const base = digestTag(digest);
  return [...COSIGN_SUFFIXES.map((s) => `${base}.${s}`), base];
}

export interface SignatureOptions {
  client: RegistryClient;
  events?: EngineEvents;
  concurrency?: number;
}

/**
 * References to what the registry holds about the manifests in `graph`: tags found in each
 * repository's tag list (or by a manifest request when the list is not available), and the
 * referrers API's answers (404 — distribution 2.8 — means none). Skips what `graph` already has.
 */
export async function findSignatures(graph: ImageGraph, opts: SignatureOptions): Promise<ResolveInput[]> {
  const have = new Set<string>();
  const subjects: { registry: string; repository: string; digest: string }[] = [];
  for (const image of graph.images) {
    const { registry, repository } = image.ref;
    if (image.ref.tag) have.add(`${registry}/${repository}:${image.ref.tag}`);
    for (const node of walkNodes(image.root)) {
      have.add(`${registry}/${repository}@${node.digest}`);
      subjects.push({ registry, repository, digest: node.digest });
    }
  }

  const tagLists = new Map<string, Promise<Set<string> | undefined>>();
  const tagsOf = (registry: string, repository: string) => {
    const key = `${registry}/${repository}`;
    let p = tagLists.get(key);
    if (!p) {
      // No tag list (some registries refuse it): fall back to asking for each candidate tag.
      p = opts.client.listTags(registry, repository).then((t) => new Set(t), () => undefined);
      tagLists.set(key, p);
    }
    return p;
  };

  const found: ResolveInput[] = [];
  const add = (ref: Reference) => {
    const key = formatReference(ref);
    if (have.has(key)) return;
    have.add(key);
    found.push({ input: key, ref });
  };

  const seen = new Set<string>();
  const unique = subjects.filter((s) => {
    const key = `${s.registry}/${s.repository}@${s.digest}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  await mapLimit(unique, opts.concurrency ?? 8, async ({ registry, repository, digest }) => {
    try {
      const tags = await tagsOf(registry, repository);
      for (const tag of signatureTags(digest)) {
        if (tags ? tags.has(tag) : await hasManifest(opts.client, registry, repository, tag)) add({ registry, repository, tag });
      }
      for (const d of await referrers(opts.client, registry, repository, digest)) add({ registry, repository, digest: d.digest });
    } catch (err) {
      // Looking for signatures must not sink the save of what they sign: say so and go on.
      opts.events?.emit({ type: 'warning', message: `${registry}/${repository}@${digest}: cannot look for signatures: ${(err as Error).message}` });
    }
  });
  return found;
}

async function hasManifest(client: RegistryClient, registry: string, repository: string, tag: string): Promise<boolean> {
  try {
    await client.getManifest(registry, repository, tag);
    return true;
  } catch (err) {
    if (err instanceof RegistryError && err.kind === 'not-found') return false;
    throw err;
  }
}

/** The referrers API's descriptors; a registry without the API (404, or 400/405 from some) has none. */
export async function referrers(client: RegistryClient, registry: string, repository: string, digest: string): Promise<Descriptor[]> {
  const res = await client.api(registry, repository, 'GET', `/v2/${repository}/referrers/${digest}`, { accept: MT.ociIndex }, `${registry}/${repository}@${digest} referrers`);
  if (res.status !== 200) return [];
  try {
    const index = JSON.parse(res.body.toString('utf8')) as { manifests?: Descriptor[] };
    return (index.manifests ?? []).filter((d) => isDigest(d.digest));
  } catch {
    throw new RegistryError('bad-response', `${registry}/${repository}@${digest}: the referrers API answered something that is not JSON`);
  }
}

/**
 * Finds the signatures of `graph`'s images and resolves them into it (with `resolver`, which should
 * keep every platform: a referrers index lists artifacts, not platforms). Returns how many were added.
 */
export async function addSignatures(graph: ImageGraph, resolver: Resolver, opts: SignatureOptions): Promise<number> {
  const inputs = await findSignatures(graph, opts);
  if (inputs.length === 0) return 0;
  const extra = await resolver.resolveAll(inputs);
  mergeGraph(graph, extra);
  return extra.images.length;
}

/** Adds `from`'s images, blobs (sources merged) and failures to `into`. */
export function mergeGraph(into: ImageGraph, from: ImageGraph): void {
  into.images.push(...from.images);
  into.failures.push(...from.failures);
  for (const need of from.blobs.values()) {
    const have: BlobNeed | undefined = into.blobs.get(need.digest);
    if (!have) {
      into.blobs.set(need.digest, { ...need, sources: [...need.sources] });
      continue;
    }
    for (const s of need.sources) {
      if (!have.sources.some((h) => h.registry === s.registry && h.repository === s.repository)) have.sources.push(s);
    }
  }
}
