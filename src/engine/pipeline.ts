// The library's main job: references → resolve → plan → download pool → cache → link.
// The CLI is a thin layer over these two functions; a program can call them the same way.
import { existsSync } from 'node:fs';
import { Cache, defaultCacheDir } from '../cache/cache.js';
import { DEFAULT_HASHER, type HasherKind } from '../hash/hasher.js';
import { linkOutput, type OutputFormat } from '../link/index.js';
import { baseHolds, checkLayoutNames, StagedRegistryLayout } from '../link/registry.js';
import { removeStaleStaging } from '../link/files.js';
import { describeWriteError } from '../cache/write-error.js';
import type { PlatformSelector } from '../ref/platform.js';
import { formatReference, parseReference } from '../ref/reference.js';
import { RegistryClient, type CredentialLookup } from '../registry/client.js';
import { blobsOf, failureOf, leafManifests, type BlobNeed, type Failure, type ImageGraph, type ResolvedImage } from '../resolve/graph.js';
import { Resolver, type ResolveInput } from '../resolve/resolve.js';
import { Mirrors, parseMirror } from '../registry/mirror.js';
import { transportOptions, type NetworkOptions } from '../registry/network.js';
import { addSignatures } from '../resolve/signatures.js';
import { describeImage, type ImageRow } from '../resolve/describe.js';
import { expandTagSets, type TagSetRequest } from '../resolve/tags.js';
import type { HostOptionsMap } from '../registry/host-options.js';
import { EngineEvents } from '../util/events.js';
import { UsageError } from '../util/errors.js';
import { InterruptedError, SaveError } from './errors.js';
import { Plan } from './plan.js';
import { ImageReadiness } from './readiness.js';
import { DownloadPool } from './pool.js';
import { Downloads, type BlobFailure } from './scheduler.js';
import { DEFAULT_MAX_CONNECTIONS, UNMEASURED_SEGMENT_BYTES } from './adaptive.js';
import type { NetLimits } from '../registry/timeouts.js';

export interface FetchOptions extends NetworkOptions {
  platforms: PlatformSelector;
  cacheDir?: string;
  plainHttp?: boolean;
  /** Connections per registry host: the ceiling of the adaptive number, or the number with `fixedJobs`. */
  jobs?: number;
  /** Exactly `jobs` connections per host (and 32 MiB ranges unless segmentBytes says), as before adaptation. */
  fixedJobs?: boolean;
  hasher?: HasherKind;
  /** Blobs of at least twice this size download as parallel ranges of this size; 0 turns it off; default: sized from each host's rate. */
  segmentBytes?: number;
  /** One failed image does not stop the others. */
  keepGoing?: boolean;
  offline?: boolean;
  credentials?: CredentialLookup;
  events?: EngineEvents;
  /** Docker Hub mirrors (host[:port]), tried in order before Docker Hub. */
  mirrors?: string[];
  /** host[:port] serving docker.io's registry API instead of registry-1.docker.io (tests: a loopback registry as Docker Hub). */
  dockerHubApi?: string;
  /** Also save cosign signatures/attestations/SBOMs and OCI referrers of every saved manifest. */
  withSignatures?: boolean;
  /** Interrupt (Ctrl-C): downloads checkpoint and stop; nothing is linked. */
  signal?: AbortSignal;
  /** Connect, header and low-speed limits, retries (default DEFAULT_NET_LIMITS in registry/timeouts.ts). */
  limits?: NetLimits;
  /** Blobs the output will not hold (a delta bundle's base has them): not downloaded. */
  notNeeded?: (digest: string) => boolean;
  /** Called with each resolved image as soon as every blob it needs is in the cache. */
  onImageReady?: (image: ResolvedImage, cache: Cache) => void;
  /** Repositories whose tags are listed and selected (--all-tags, --tag-regex, sync YAML …); each selected tag is one more input. */
  tagSets?: TagSetRequest[];
  /** Per-registry TLS settings (a sync YAML's tls-verify, cert-dir); honoured by the transport (issue 12). */
  hostOptions?: HostOptionsMap;
  /** Sees every parsed input, tag sets expanded, before anything resolves; throws to stop (layout name collisions). */
  checkInputs?: (inputs: readonly ResolveInput[]) => void;
}

export interface SaveOptions extends FetchOptions {
  format: OutputFormat;
  out: string;
  uncompressed?: boolean;
  /** registry format: write only what this base bundle lacks (a delta bundle). */
  since?: string;
  /** oci formats: keep docker-typed manifests as fetched instead of converting them (see link/oci-layout.ts). */
  preserveDigests?: boolean;
  /** registry format: repositories keep their source host in front (`HOST/repo`), as skopeo sync --scoped. */
  scoped?: boolean;
  /** oci formats: with one platform selected, name the original index (the form before issue 13) instead of that platform's manifest. */
  keepIndex?: boolean;
}

export interface Summary {
  images: number;
  /** Each image saved (failed ones left out): its reference, digest and platforms. */
  saved: ImageRow[];
  manifests: number;
  blobs: number;
  bytes: number;
  downloaded: { blobs: number; bytes: number };
  reused: { blobs: number; bytes: number };
  /** Bytes a previous, interrupted run had already checkpointed. */
  resumedBytes: number;
  failures: Failure[];
  output?: { format: OutputFormat; path: string };
  seconds: number;
  /** Peak resident memory of the process (workers included), in bytes. */
  peakRssBytes: number;
}

export interface FetchResult {
  graph: ImageGraph;
  cache: Cache;
  summary: Summary;
  close(): Promise<void>;
}

/** The ceiling of connections per host (see adaptive.ts); with --fixed-jobs, use -j 8 for the number of before. */
export const DEFAULT_JOBS = DEFAULT_MAX_CONNECTIONS;
/** Range size with --fixed-jobs and no --segment-size, and until a host's rate is measured. */
export const DEFAULT_SEGMENT_BYTES = UNMEASURED_SEGMENT_BYTES;

export interface ResolvedGraph {
  /** graph.failures holds every input that did not resolve (bad references included). */
  graph: ImageGraph;
  cache: Cache;
  client: RegistryClient;
  close(): Promise<void>;
}

/** What resolving and downloading share: the cache, the registry client, mirrors. */
interface Session {
  cache: Cache;
  client: RegistryClient;
  mirrors?: Mirrors;
  close(): Promise<void>;
}

function openSession(opts: FetchOptions, events: EngineEvents): Session {
  const mirrorHosts = (opts.mirrors ?? []).map((m) => parseMirror(m, opts.plainHttp));
  const transport = transportOptions(opts);
  const cache = Cache.open(opts.cacheDir ?? defaultCacheDir());
  const client = new RegistryClient({
    plainHttp: opts.plainHttp,
    credentials: opts.credentials,
    connections: (opts.jobs ?? DEFAULT_JOBS) + 4,
    transport,
    limits: opts.limits,
    dockerHubApi: opts.dockerHubApi,
  });
  const conf = opts.registriesConf;
  const mirrors = mirrorHosts.length || conf?.registries.length ? new Mirrors(client, { hubMirrors: mirrorHosts, registriesConf: conf }, events) : undefined;
  return {
    cache,
    client,
    mirrors,
    close: async () => {
      await client.close();
      await cache.close();
    },
  };
}

/** Parsed inputs; without keepGoing, a bad reference throws before anything starts. */
function parseInputs(inputs: string[], opts: FetchOptions): { parsed: ResolveInput[]; failures: Failure[] } {
  const failures: Failure[] = [];
  const parsed: ResolveInput[] = [];
  for (const input of inputs) {
    try {
      parsed.push({ input, ref: parseReference(input) });
    } catch (err) {
      failures.push(failureOf(input, err));
    }
  }
  if (failures.length && !opts.keepGoing) throw new SaveError(failures);
  return { parsed, failures };
}

/**
 * Lists the tags of every tag set and adds each selected tag as an input (tags already given
 * are not added twice); then lets checkInputs see the whole list. Without keepGoing, a listing
 * that fails stops the run before anything resolves.
 */
async function addTagSets(session: Session, inputs: { parsed: ResolveInput[]; failures: Failure[] }, opts: FetchOptions, events: EngineEvents): Promise<void> {
  if (opts.tagSets?.length) {
    if (opts.offline) throw new UsageError('tag sets (--all-tags, --tag-regex, --tag-semver, --newest, sync YAML tag rules) list tags on the registry: they cannot work --offline');
    const expanded = await expandTagSets(session.client, opts.tagSets);
    for (const message of expanded.warnings) events.emit({ type: 'warning', message });
    const given = new Set(inputs.parsed.map((p) => formatReference(p.ref)));
    const added = parseInputs(expanded.references.filter((r) => !given.has(r)), { ...opts, keepGoing: true });
    inputs.parsed.push(...added.parsed);
    inputs.failures.push(...added.failures, ...expanded.failures);
    if (inputs.failures.length && !opts.keepGoing) throw new SaveError(inputs.failures);
  }
  opts.checkInputs?.(inputs.parsed);
}

/** Every input to manifests and the blobs they need; `onBlob` hears of each blob as it is found. */
async function resolveInputs(
  session: Session,
  inputs: { parsed: ResolveInput[]; failures: Failure[] },
  opts: FetchOptions,
  events: EngineEvents,
  onBlob?: (need: BlobNeed) => void,
  onImage?: (image: ResolvedImage) => void,
): Promise<ImageGraph> {
  const { cache, client, mirrors } = session;
  const resolverOpts = { client, cache, platforms: opts.platforms, offline: opts.offline, events, mirrors, onBlob, onImage };
  const graph = await new Resolver(resolverOpts).resolveAll(inputs.parsed);
  // Signatures and referrers are artifacts, not platform images: keep all of what they list.
  if (opts.withSignatures && !opts.offline) await addSignatures(graph, new Resolver({ ...resolverOpts, platforms: 'all' }), { client, events });
  graph.failures.unshift(...inputs.failures);
  if (graph.failures.length && !opts.keepGoing) throw new SaveError(graph.failures);
  return graph;
}

/**
 * The resolve phase alone (`ocisave resolve`): every input to manifests and the blobs they need,
 * nothing downloaded. Without keepGoing, any failure throws.
 */
export async function resolveGraph(inputs: string[], opts: FetchOptions): Promise<ResolvedGraph> {
  const events = opts.events ?? new EngineEvents();
  const parsed = parseInputs(inputs, opts);
  const session = openSession(opts, events);
  try {
    await addTagSets(session, parsed, opts, events);
    const graph = await resolveInputs(session, parsed, opts, events);
    return { graph, cache: session.cache, client: session.client, close: session.close };
  } catch (err) {
    await session.close();
    throw err;
  }
}

/**
 * Resolve every input and make sure each blob it needs is verified in the cache. A blob starts
 * downloading as soon as the first image needing it has resolved, while the others still resolve.
 */
export async function fetchImages(inputs: string[], opts: FetchOptions): Promise<FetchResult> {
  const started = Date.now();
  const events = opts.events ?? new EngineEvents();
  const jobs = opts.jobs ?? DEFAULT_JOBS;
  const parsed = parseInputs(inputs, opts);
  const session = openSession(opts, events);
  const { cache, client } = session;
  let pool: DownloadPool | undefined;
  const close = async () => {
    await pool?.close();
    await session.close();
  };
  try {
    await addTagSets(session, parsed, opts, events);
    pool = opts.offline ? undefined : new DownloadPool(jobs);
    const plan = new Plan(cache, opts.notNeeded);
    const downloads = pool && new Downloads({ cache, client, pool, jobs, fixedJobs: opts.fixedJobs, hasher: opts.hasher ?? DEFAULT_HASHER, segmentBytes: opts.segmentBytes, events, failFast: !opts.keepGoing, signal: opts.signal, limits: opts.limits });
    const planning: Promise<unknown>[] = [];
    const onImageReady = opts.onImageReady;
    const readiness = onImageReady && new ImageReadiness((image) => onImageReady(image, cache));
    if (readiness) events.on((e) => e.type === 'blob-done' && readiness.blobReady(e.digest));
    const onBlob = (need: BlobNeed) =>
      planning.push(
        plan.add(need).then((b) => {
          if (b) downloads?.add(b);
          else if (plan.isCached(need.digest)) readiness?.blobReady(need.digest);
        }),
      );
    // Without --keep-going the save fails with its first unresolvable image: stop downloading then.
    if (!opts.keepGoing) events.on((e) => e.type === 'resolve-failed' && downloads?.cancel());
    let graph: ImageGraph;
    try {
      graph = await resolveInputs(session, parsed, opts, events, onBlob, readiness && ((image) => readiness.addImage(image)));
      // Blobs merged in after resolving (signatures) are planned here; the others already were.
      for (const need of graph.blobs.values()) onBlob(need);
      await Promise.all(planning);
    } catch (err) {
      // Running downloads checkpoint and return before the cache closes under them.
      downloads?.cancel();
      await Promise.allSettled(planning);
      await downloads?.finish();
      throw err;
    }
    events.emit({ type: 'plan', blobs: graph.blobs.size, bytes: plan.totalBytes, cached: plan.cached.length, cachedBytes: plan.cachedBytes, queued: plan.queue.length, queuedBytes: plan.queuedBytes });
    if (plan.queue.length && !downloads) throw new SaveError(plan.queue.map((b) => ({ input: b.digest, error: 'not in the cache (--offline)', code: 'NOT_FOUND' })));
    const report = downloads ? await downloads.finish() : { fetchedBytes: 0, resumedBytes: 0, downloaded: 0, failed: new Map<string, BlobFailure>() };

    if (opts.signal?.aborted) throw new InterruptedError();
    const failures: Failure[] = [...graph.failures];
    // An image fails with any blob it needs.
    if (report.failed.size) {
      graph.images = graph.images.filter((image) => {
        const bad = leafManifests(image.root).flatMap(blobsOf).find((d) => report.failed.has(d.digest));
        if (bad) {
          const { message, ...coded } = report.failed.get(bad.digest)!;
          failures.push({ input: image.input, error: `blob ${bad.digest}: ${message}`, ...coded });
        }
        return !bad;
      });
    }
    graph.failures = failures;
    await cache.touch(graph.blobs.keys());

    const summary: Summary = {
      images: graph.images.length,
      saved: graph.images.map(describeImage),
      manifests: graph.images.reduce((n, i) => n + countNodes(i.root), 0),
      blobs: graph.blobs.size,
      bytes: plan.totalBytes,
      downloaded: { blobs: report.downloaded, bytes: report.fetchedBytes },
      reused: { blobs: plan.cached.length, bytes: plan.cachedBytes },
      resumedBytes: report.resumedBytes,
      failures,
      seconds: (Date.now() - started) / 1000,
      peakRssBytes: 0,
    };
    if (failures.length && !opts.keepGoing) throw new SaveError(failures, summary);
    return { graph, cache, summary, close };
  } catch (err) {
    await close();
    throw err;
  }
}

function countNodes(node: import('../resolve/graph.js').GraphNode): number {
  return node.kind === 'index' ? 1 + node.children.reduce((n, c) => n + countNodes(c), 0) : 1;
}

/**
 * fetchImages, then materialise the output. Failed images (with keepGoing) are left out of it.
 * A new registry layout is written while blobs still download, each image as soon as its blobs
 * are in the cache, under a staging name that becomes the output's only if the save succeeds.
 */
export async function save(inputs: string[], opts: SaveOptions): Promise<Summary> {
  const started = Date.now();
  // What earlier saves of this output left when killed; a live concurrent save's is kept.
  await removeStaleStaging(opts.out);
  const stage = opts.format === 'registry' && !existsSync(opts.out);
  let staged: StagedRegistryLayout | undefined;
  const stagedIn = (cache: Cache) => (staged ??= new StagedRegistryLayout(opts.out, cache, opts.since, opts.scoped));
  const onePlatform = !opts.keepIndex && opts.platforms !== 'all' && opts.platforms.length === 1;
  let fetched: FetchResult;
  try {
    fetched = await fetchImages(inputs, {
      ...opts,
      checkInputs: opts.format === 'registry' ? (parsed) => checkLayoutNames(parsed, !!opts.scoped) : undefined,
      notNeeded: opts.since ? baseHolds(opts.since) : undefined,
      onImageReady: stage ? (image, cache) => stagedIn(cache).add(image) : undefined,
    });
  } catch (err) {
    await staged?.discard();
    throw err;
  }
  try {
    const { graph, cache, summary } = fetched;
    if (graph.images.length > 0) {
      if (stage) {
        await stagedIn(cache).commit(graph.images);
      } else {
        await linkOutput(opts.format, {
          graph,
          cache,
          out: opts.out,
          uncompressed: opts.uncompressed,
          since: opts.since,
          preserveDigests: opts.preserveDigests,
          scoped: opts.scoped,
          onePlatform,
          onWarning: (message) => opts.events?.emit({ type: 'warning', message }),
        });
      }
      opts.events?.emit({ type: 'link', format: opts.format, path: opts.out });
      summary.output = { format: opts.format, path: opts.out };
    } else {
      await staged?.discard();
    }
    summary.seconds = (Date.now() - started) / 1000;
    summary.peakRssBytes = process.resourceUsage().maxRSS * 1024;
    return summary;
  } catch (err) {
    await staged?.discard();
    throw describeWriteError(err, opts.out);
  } finally {
    await fetched.close();
  }
}
