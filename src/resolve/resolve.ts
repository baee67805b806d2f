// References → image graph: fetch each root manifest, walk indexes keeping the platforms asked for,
// and collect every config and layer blob once, remembering which repositories can serve it.
import type { Cache } from '../cache/cache.js';
import { formatPlatform, normalizePlatform, selectorMatches, type Platform, type PlatformSelector } from '../ref/platform.js';
import { DOCKER_HUB, formatReference, type Reference } from '../ref/reference.js';
import type { FetchedManifest, RegistryClient } from '../registry/client.js';
import { RegistryError } from '../registry/errors.js';
import { blobsOf, leafManifests, failureOf, type BlobNeed, type Descriptor, type GraphNode, type ImageGraph, type ResolvedImage } from './graph.js';
import { isIndexType, isManifestType } from '../util/mediatypes.js';
import { mapLimit } from '../util/limit.js';
import type { EngineEvents } from '../util/events.js';
import type { Mirrors } from '../registry/mirror.js';
import { checkDigest, checkSize, isDigest } from '../ref/digest.js';

/**
 * Indexes nest at most this deep (the root index counts one). Real images use one level, two with
 * an index of indexes (some artifact tools); 8 leaves room and stops a registry that nests forever.
 */
export const MAX_INDEX_DEPTH = 8;
/**
 * Manifests one input may resolve to, counting every index entry followed. A 4 MiB index holds at
 * most ~20,000 entries of ~200 bytes, so one full index fits; nested ones that multiply do not.
 */
export const MAX_MANIFESTS_PER_INPUT = 25_000;
/** Child manifests of one index fetched at once: a 10,000-entry index must not open 10,000 requests. */
const CHILD_FETCHES = 16;

/** Where a node sits: the digests from the root down to it, and the input's manifest count so far. */
interface Walk {
  chain: string[];
  budget: { left: number };
}

/** `sha256:0123456789ab…`: a digest short enough for a chain in one line. */
function shortDigest(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

export interface ResolveInput {
  input: string;
  ref: Reference;
}

export interface ResolveOptions {
  client: RegistryClient;
  cache: Cache;
  platforms: PlatformSelector;
  /** Manifests fetched at once. */
  concurrency?: number;
  /** Use only what the cache knows (tags resolved by an earlier run). */
  offline?: boolean;
  events?: EngineEvents;
  /** Docker Hub mirrors tried before Docker Hub, for manifests and blobs. */
  mirrors?: Mirrors;
  /** Called with each blob the first time an image needs it, while the others still resolve. */
  onBlob?: (need: BlobNeed) => void;
  /** Called with each image once it has resolved (after onBlob for its new blobs). */
  onImage?: (image: ResolvedImage) => void;
}

interface RawIndex {
  manifests?: (Descriptor & { platform?: Platform })[];
}

interface RawManifest {
  config?: Descriptor;
  layers?: Descriptor[];
}

export class Resolver {
  /** In-flight and finished manifest fetches, by registry/repository@digest. */
  private readonly fetched = new Map<string, Promise<FetchedManifest>>();
  /** Cache writes (manifests, tags): not waited for one by one, all before resolveAll returns. */
  private readonly writes: Promise<unknown>[] = [];

  /** Keep a cache write to wait for later; its failure (a full disk) is reported then, not as an unhandled rejection now. */
  private later(write: Promise<unknown>): void {
    write.catch(() => undefined);
    this.writes.push(write);
  }

  constructor(private readonly opts: ResolveOptions) {}

  async resolveAll(inputs: ResolveInput[]): Promise<ImageGraph> {
    const graph: ImageGraph = { images: [], blobs: new Map(), failures: [] };
    const results = await mapLimit(inputs, this.opts.concurrency ?? 16, async (item) => {
      try {
        const image = await this.resolveOne(item);
        const { registry, repository } = image.ref;
        const sources = this.opts.mirrors ? await this.opts.mirrors.blobSources(registry, repository, image.root.digest) : undefined;
        addBlobs(graph.blobs, image, sources, this.opts.onBlob);
        this.opts.onImage?.(image);
        return image;
      } catch (err) {
        const failure = failureOf(item.input, err);
        graph.failures.push(failure);
        this.opts.events?.emit({ type: 'resolve-failed', input: item.input, error: failure.error, code: failure.code });
        return undefined;
      }
    });
    // Images keep the order of the inputs, whatever order they resolved in.
    for (const image of results) if (image) graph.images.push(image);
    await Promise.all(this.writes);
    return graph;
  }

  async resolveOne(item: ResolveInput): Promise<ResolvedImage> {
    const { ref } = item;
    const rootRef = ref.digest ?? ref.tag!;
    const top = await this.manifest(ref.registry, ref.repository, rootRef);
    // A tag given with a digest (a lock file's entries) is a name only: it says nothing about where the tag points now.
    if (ref.tag && !ref.digest) {
      this.later(this.opts.cache.putTag(`${ref.registry}/${ref.repository}:${ref.tag}`, { digest: top.digest, mediaType: top.mediaType, resolvedAt: Date.now() }));
    }
    const root = await this.node(ref, top, undefined, { chain: [], budget: { left: MAX_MANIFESTS_PER_INPUT - 1 } });
    const image: ResolvedImage = { input: item.input, ref, root };
    this.opts.events?.emit({ type: 'resolved', input: item.input, digest: root.digest, platforms: leafManifests(root).map((m) => (m.platform ? formatPlatform(m.platform) : 'any')) });
    return image;
  }

  private async node(ref: Reference, m: FetchedManifest, platform: Platform | undefined, walk: Walk): Promise<GraphNode> {
    const name = formatReference(ref);
    const json = JSON.parse(m.bytes.toString('utf8')) as RawIndex & RawManifest & { subject?: Descriptor };
    const chain = [...walk.chain, m.digest];
    const where = `${name}: ${isIndexType(m.mediaType) ? 'index' : 'manifest'} ${m.digest}`;
    if (json.subject !== undefined) checkDescriptor(json.subject, `${where} subject`);
    if (isIndexType(m.mediaType)) {
      const entries = Array.isArray(json.manifests) ? json.manifests : [];
      // Every entry is checked, selected or not: its digest is about to name a request.
      entries.forEach((d, i) => checkDescriptor(d, `${where} manifests[${i}]`));
      if (chain.length > MAX_INDEX_DEPTH) {
        throw new RegistryError('bad-response', `${name}: indexes nested deeper than ${MAX_INDEX_DEPTH}: ${chain.map(shortDigest).join(' → ')}`, undefined, 'LIMIT');
      }
      const wanted = entries.filter((d) => this.opts.platforms === 'all' || (d.platform && selectorMatches(this.opts.platforms, d.platform)));
      if (wanted.length === 0) {
        const have = entries.map((d) => (d.platform ? formatPlatform(normalizePlatform(d.platform)) : 'unknown')).join(', ');
        throw new RegistryError('not-found', `${name}: no manifest for the platforms asked for (it has: ${have || 'none'}); pass --platform with one of these, or --platform all`);
      }
      const cycle = wanted.find((d) => chain.includes(d.digest));
      if (cycle) throw new RegistryError('bad-response', `${name}: index cycle: ${[...chain, cycle.digest].map(shortDigest).join(' → ')}`);
      walk.budget.left -= wanted.length;
      if (walk.budget.left < 0) throw new RegistryError('bad-response', `${name}: more than ${MAX_MANIFESTS_PER_INPUT} manifests under one reference`, undefined, 'LIMIT');
      const children = await mapLimit(wanted, CHILD_FETCHES, async (d) => {
        const child = await this.manifest(ref.registry, ref.repository, d.digest);
        return this.node(ref, child, d.platform ? normalizePlatform(d.platform) : undefined, { chain, budget: walk.budget });
      });
      return { kind: 'index', digest: m.digest, mediaType: m.mediaType, bytes: m.bytes, children };
    }
    if (!isManifestType(m.mediaType) && !json.config) {
      throw new RegistryError('unsupported', `${name}: unsupported manifest media type ${m.mediaType}`);
    }
    if (!json.config?.digest) throw new RegistryError('bad-response', `${name}: manifest ${m.digest} has no config`);
    const layers = json.layers ?? [];
    if (!Array.isArray(layers)) throw new RegistryError('bad-response', `${where}: "layers" is not a list`);
    checkDescriptor(json.config, `${where} config`);
    layers.forEach((d, i) => checkDescriptor(d, `${where} layers[${i}]`));
    return {
      kind: 'manifest',
      digest: m.digest,
      mediaType: m.mediaType,
      bytes: m.bytes,
      platform,
      config: json.config,
      layers,
    };
  }

  /** A manifest by tag or digest: digests come from the cache when known (content-addressed), tags from the registry. */
  private manifest(registry: string, repository: string, reference: string): Promise<FetchedManifest> {
    const key = `${registry}/${repository}@${reference}`;
    let p = this.fetched.get(key);
    if (!p) {
      p = this.load(registry, repository, reference);
      this.fetched.set(key, p);
    }
    return p;
  }

  /**
   * A tag resolved before (the cache remembers it) whose manifest is still in the cache: one
   * conditional GET (If-None-Match: its digest) asks whether the tag still points there. A 304
   * gives the cache's bytes, re-hashed (Cache.getManifest); a moved tag answers 200 with the new
   * manifest, one request in all. 247 tags of a warm save keep a few connections open, where HEADs
   * opened 248 (undici closes the connection after every HEAD). Docker Hub keeps HEAD: it counts
   * every manifest GET, a 304 too, against its pull rate limit, and no HEAD. A tag never seen goes
   * straight to GET (a cold save pays no extra round trip), as do mirrors (getManifest asks each
   * host in turn) and a tag whose manifest the cache lost. Undefined: the caller GETs.
   */
  private async knownTagTarget(registry: string, repository: string, tag: string): Promise<FetchedManifest | undefined> {
    const { cache, client, mirrors } = this.opts;
    const known = mirrors ? undefined : cache.getTag(`${registry}/${repository}:${tag}`);
    if (!known) return undefined;
    if (registry === DOCKER_HUB) {
      const digest = await client.headManifestDigest(registry, repository, tag);
      return digest ? this.cachedManifest(digest) : undefined;
    }
    const held = isDigest(known.digest) ? this.cachedManifest(known.digest) : undefined;
    if (!held) return undefined;
    const m = await client.getManifest(registry, repository, tag, held.digest);
    if ('unchanged' in m) return held;
    this.later(cache.putManifest(m.digest, { mediaType: m.mediaType, bytes: m.bytes }));
    return m;
  }

  /** The manifest `digest` from the cache, re-hashed; undefined when absent or damaged. */
  private cachedManifest(digest: string): FetchedManifest | undefined {
    const rec = this.opts.cache.getManifest(digest);
    return rec && { digest, mediaType: rec.mediaType, bytes: rec.bytes };
  }

  private async load(registry: string, repository: string, reference: string): Promise<FetchedManifest> {
    const { cache, client, offline } = this.opts;
    let digest = reference.startsWith('sha256:') ? reference : undefined;
    if (!digest && offline) {
      digest = cache.getTag(`${registry}/${repository}:${reference}`)?.digest;
      if (digest) checkDigest(digest, `${registry}/${repository}:${reference} in the cache`);
      if (!digest) throw new RegistryError('not-found', `${registry}/${repository}:${reference}: not in the cache (--offline)`);
    }
    if (!digest && !offline) {
      const known = await this.knownTagTarget(registry, repository, reference);
      if (known) return known;
    }
    if (digest) {
      const held = this.cachedManifest(digest);
      if (held) return held;
      if (offline) throw new RegistryError('not-found', `${registry}/${repository}@${digest}: not in the cache (--offline)`);
    }
    const m = this.opts.mirrors ? await this.opts.mirrors.getManifest(registry, repository, reference) : await client.getManifest(registry, repository, reference);
    this.later(cache.putManifest(m.digest, { mediaType: m.mediaType, bytes: m.bytes }));
    return m;
  }
}

/**
 * A descriptor's digest and size, checked before either names a request, a cache key or a path.
 * Sizes have no bound below 2^53: see segmentsOf in engine/scheduler.ts for why none is needed.
 */
function checkDescriptor(d: unknown, what: string): void {
  if (!d || typeof d !== 'object') throw new RegistryError('bad-response', `${what}: not a descriptor`);
  const { digest, size } = d as { digest?: unknown; size?: unknown };
  try {
    checkDigest(digest, what);
    checkSize(size, what);
  } catch (err) {
    throw new RegistryError('bad-response', (err as Error).message);
  }
}

/** Records the blobs of `image` with the repositories that serve them; `onNew` hears of each digest seen first here. */
function addBlobs(blobs: Map<string, BlobNeed>, image: ResolvedImage, sources = [{ registry: image.ref.registry, repository: image.ref.repository }], onNew?: (need: BlobNeed) => void): void {
  for (const m of leafManifests(image.root)) {
    for (const d of blobsOf(m)) {
      let need = blobs.get(d.digest);
      const isNew = !need;
      if (!need) {
        need = { digest: d.digest, size: d.size, mediaType: d.mediaType, sources: [] };
        blobs.set(d.digest, need);
      }
      for (const source of sources) {
        if (!need.sources.some((s) => s.registry === source.registry && s.repository === source.repository)) need.sources.push(source);
      }
      if (isNew) onNew?.(need);
    }
  }
}
