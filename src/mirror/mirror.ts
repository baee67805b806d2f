// `ocisave mirror`: registry to registry through the shared cache. fetchImages resolves and
// downloads; each image is pushed as soon as every blob it needs is in the cache (the engine's
// readiness), through push's machinery: HEAD to skip what the target has, mounts across target
// repositories, chunked uploads, manifests children first, the tag last. Images of one target
// repository go one after another (a blob they share is uploaded once, then found by HEAD);
// repositories go in parallel. Nothing is written to disk but the cache.
import { fetchImages, type FetchOptions, type FetchResult } from '../engine/pipeline.js';
import { SaveError } from '../engine/errors.js';
import { Semaphore } from '../util/limit.js';
import { layoutRepository, checkLayoutNames } from '../link/registry.js';
import { parseReference, type Reference } from '../ref/reference.js';
import { emptyPushSummary, ping, pushRepositories, targetClient, type PushEvent, type PushRun, type PushSummary } from '../push/push.js';
import { parseTarget, targetRepository, type PushTarget } from '../push/target.js';
import { DEFAULT_CHUNK_BYTES, PushSession } from '../push/upload.js';
import type { Failure, ResolvedImage } from '../resolve/graph.js';
import { reportOf } from '../util/errors.js';
import { ImageBundle } from './image-bundle.js';
import { tagState, targetManifest } from './target-state.js';

export interface MirrorOptions extends FetchOptions {
  /** HOST[:PORT][/prefix] */
  to: string;
  /** Target repositories keep the source host in front (HOST/repo), as save --scoped. */
  scoped?: boolean;
  /** Blob uploads in flight at once (default 4). */
  uploadJobs?: number;
  /** Bytes per PATCH (default 16 MiB). */
  chunkBytes?: number;
  /** Time the pushes may spend on failed attempts and waits before retries (default push's). */
  retryBudgetMs?: number;
  onPush?: (e: PushEvent) => void;
}

export interface MirrorSummary {
  target: string;
  images: number;
  /** Every target reference written: `host/repo:tag`, or `host/repo@digest` for digest-only inputs. */
  references: string[];
  tags: { new: number; moved: number; unchanged: number };
  moved: { reference: string; from: string; to: string }[];
  manifests: PushSummary['manifests'];
  /** transferred = uploaded + mounted: what this run added to the target. */
  blobs: PushSummary['blobs'] & { transferred: number };
  retagged: PushSummary['retagged'];
  /** What the source side fetched into the cache, and what the cache already held. */
  source: { downloaded: { blobs: number; bytes: number }; reused: { blobs: number; bytes: number } };
  failures: Failure[];
  seconds: number;
  peakRssBytes: number;
}

/** The target repository of an image: its own (or scoped) name under the target's prefix. */
export function mirrorRepository(target: PushTarget, ref: Reference, scoped: boolean): { name: string; repo: string } {
  const name = layoutRepository(ref, scoped);
  return { name, repo: targetRepository(target, name) };
}

/** A repository to ping the target with (its token scope), from the first input that parses. */
export function firstRepository(inputs: readonly string[], fallback: string): string {
  for (const input of inputs) {
    try {
      return parseReference(input).repository;
    } catch {
      // reported by the fetch, with the input named
    }
  }
  return fallback;
}

export async function mirror(inputs: string[], opts: MirrorOptions): Promise<MirrorSummary> {
  const started = Date.now();
  const target = parseTarget(opts.to);
  const jobs = opts.uploadJobs ?? 4;
  const client = targetClient(target, opts, jobs + 4);
  const session = new PushSession(client, target.registry);
  const pushed = emptyPushSummary(target, 'mirror');
  const out: MirrorSummary = {
    target: pushed.target,
    images: 0,
    references: [],
    tags: { new: 0, moved: 0, unchanged: 0 },
    moved: [],
    manifests: pushed.manifests,
    blobs: { ...pushed.blobs, transferred: 0 },
    retagged: pushed.retagged,
    source: { downloaded: { blobs: 0, bytes: 0 }, reused: { blobs: 0, bytes: 0 } },
    failures: [],
    seconds: 0,
    peakRssBytes: 0,
  };
  try {
    // Fail before downloading anything when the target is down or refuses us.
    await ping(session, targetRepository(target, firstRepository([...inputs, ...(opts.tagSets ?? []).map((t) => t.repository)], 'library/ocisave')));
    const run: PushRun = { target, client, session, uploads: new Semaphore(jobs), homes: new Map(), jobs, chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES, summary: pushed, emit: opts.onPush ?? (() => {}) };
    const images = new Semaphore(Math.max(1, Math.min(4, jobs)));
    /** One chain per target repository: its images go one after another. */
    const chains = new Map<string, Promise<void>>();
    let bundle: ImageBundle | undefined;

    const pushImage = async (image: ResolvedImage): Promise<void> => {
      const { name, repo } = mirrorRepository(target, image.ref, !!opts.scoped);
      const release = await images.acquire();
      try {
        const failed = pushed.failures.length;
        const before = image.ref.tag ? await targetManifest(session, repo, image.ref.tag) : undefined;
        await pushRepositories(bundle!, [bundle!.add(image, name)], run);
        if (pushed.failures.slice(failed).some((f) => f.repository === repo)) return;
        out.images++;
        const where = `${target.registry}/${repo}`;
        if (!image.ref.tag) {
          out.references.push(`${where}@${image.root.digest}`);
          return;
        }
        const state = tagState(before, image.root.digest);
        out.tags[state]++;
        if (state === 'moved') out.moved.push({ reference: `${where}:${image.ref.tag}`, from: before!, to: image.root.digest });
      } catch (err) {
        pushed.failures.push({ repository: repo, ...reportOf(err) });
      } finally {
        release();
      }
    };
    const onImageReady = (image: ResolvedImage, cache: FetchResult['cache']) => {
      bundle ??= new ImageBundle(cache, opts.cacheDir ?? 'cache');
      const { repo } = mirrorRepository(target, image.ref, !!opts.scoped);
      const next = (chains.get(repo) ?? Promise.resolve()).then(() => pushImage(image));
      chains.set(repo, next);
    };

    let fetched: FetchResult | undefined;
    try {
      fetched = await fetchImages(inputs, { ...opts, checkInputs: (parsed) => checkLayoutNames(parsed, !!opts.scoped), onImageReady });
      out.source = { downloaded: fetched.summary.downloaded, reused: fetched.summary.reused };
      out.failures.push(...fetched.summary.failures);
    } catch (err) {
      // Images pushed before a failure stay pushed: report them with the failures, not "nothing written".
      if (!(err instanceof SaveError)) throw err;
      out.failures.push(...err.failures);
      if (err.summary) out.source = { downloaded: err.summary.downloaded, reused: err.summary.reused };
    } finally {
      // Pushes under way finish (or fail) before the cache closes, whatever the fetch did.
      await Promise.allSettled(chains.values());
      await fetched?.close();
    }
  } finally {
    await client.close();
  }
  out.references.push(...pushed.tags);
  out.references.sort();
  out.failures.push(...pushed.failures.map(({ repository, ...f }) => ({ input: repository, ...f })));
  out.blobs = { ...pushed.blobs, transferred: pushed.blobs.uploaded + pushed.blobs.mounted };
  out.seconds = (Date.now() - started) / 1000;
  out.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  return out;
}
