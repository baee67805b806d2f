// `ocisave push`: load a saved bundle into a registry, digests unchanged.
// Per repository: every blob first (HEAD, skip when present; mount when this run already put it
// in another repository of the target; else a chunked upload streamed from the bundle), then
// manifests children-first with their exact bytes and media type (the registry checks that
// everything a manifest references is there), then tags. Repositories go in parallel; uploads
// share one limit. A delta bundle (`save --since`) lacks blobs and manifests its base has: those
// must already be in the target (push the base first), which HEAD and mount find.
import { Semaphore, mapLimit } from '../util/limit.js';
import { codeOf, InvalidInputError, OcisaveError, reportOf, type ErrorCode } from '../util/errors.js';
import { openBundle, type OpenedBundle } from '../bundle/index.js';
import { manifestRefs, type Bundle, type BundleRepository } from '../bundle/types.js';
import { RegistryClient, type CredentialLookup } from '../registry/client.js';
import { transportOptions, type NetworkOptions } from '../registry/network.js';
import { errorDetail, registryAnswerError, RegistryError } from '../registry/errors.js';
import { RetryBudget } from '../registry/retry.js';
import type { NetLimits } from '../registry/timeouts.js';
import { MANIFEST_ACCEPT } from '../util/mediatypes.js';
import { sha256Bytes } from '../hash/hasher.js';
import { parseTarget, targetRepository, type PushTarget } from './target.js';
import { CorruptBlobError, DEFAULT_CHUNK_BYTES, httpError, PushSession } from './upload.js';

export interface PushOptions extends NetworkOptions {
  /** HOST[:PORT][/prefix] */
  to: string;
  plainHttp?: boolean;
  credentials?: CredentialLookup;
  /** Blob uploads in flight at once (default 4). */
  jobs?: number;
  /** Bytes per PATCH (default 16 MiB). */
  chunkBytes?: number;
  /** Only these bundle repositories (default: all). */
  only?: string[];
  /** Connect, header and low-speed limits, retries per request (default DEFAULT_NET_LIMITS). */
  limits?: NetLimits;
  /** Time the whole push may spend on failed attempts and waits before retries (default DEFAULT_PUSH_RETRY_BUDGET_MS). */
  retryBudgetMs?: number;
  onEvent?: (e: PushEvent) => void;
}

export type PushEvent =
  | { type: 'blob'; repository: string; digest: string; size: number; how: 'uploaded' | 'mounted' | 'present' }
  | { type: 'manifest'; repository: string; digest: string; how: 'pushed' | 'present' }
  | { type: 'tag'; reference: string; digest: string; platformOf?: string }
  | { type: 'warning'; message: string };

export interface PushSummary {
  bundle: string;
  format: string;
  target: string;
  repositories: number;
  tags: string[];
  /** Tags of indexes the target refused because the bundle holds one platform only: they name that platform's manifest. */
  retagged: { reference: string; index: string; manifest: string }[];
  manifests: { pushed: number; present: number };
  blobs: { uploaded: number; mounted: number; present: number; uploadedBytes: number };
  /** `code` and `status` as in a save's failures (README, "Errors"). */
  failures: { repository: string; error: string; code: ErrorCode; status?: number }[];
  seconds: number;
}

interface RepoPlan {
  source: BundleRepository;
  target: string;
  /** Manifests in push order: every child before its index. `absent`: an index entry the bundle lacks. */
  manifests: { digest: string; absent?: boolean }[];
  /** Index → the entries the bundle holds, for indexes that lack some (saved for some platforms only). */
  partialIndexes: Map<string, string[]>;
  blobs: Map<string, number | undefined>;
}

/** Post-order walk of the repository's manifests, collecting blobs; absent manifests are left to the target. */
async function planRepository(bundle: Bundle, repo: BundleRepository, target: string): Promise<RepoPlan> {
  const order: RepoPlan['manifests'] = [];
  const partialIndexes = new Map<string, string[]>();
  const seen = new Set<string>();
  const blobs = new Map<string, number | undefined>();
  const visit = async (digest: string) => {
    if (seen.has(digest)) return;
    seen.add(digest);
    const m = await bundle.manifest(digest);
    // Checked before anything is sent, so a damaged manifest stops the push before any upload.
    if (m && sha256Bytes(m.bytes) !== digest) {
      throw new CorruptBlobError(digest, `manifest ${digest} in the bundle hashes to ${sha256Bytes(m.bytes)}: the bundle is damaged (run ocisave verify)`);
    }
    if (m) {
      const refs = manifestRefs(m.mediaType, m.bytes, `manifest ${digest}`);
      const held: string[] = [];
      let lacking = false;
      for (const child of refs.manifests) {
        // An index saved for some platforms only: its other children are not in the bundle.
        if (repo.manifests.has(child.digest) || (await bundle.manifest(child.digest))) {
          held.push(child.digest);
          await visit(child.digest);
        } else {
          lacking = true;
          order.push({ digest: child.digest, absent: true });
        }
      }
      if (lacking) partialIndexes.set(digest, held);
      for (const b of refs.blobs) blobs.set(b.digest, b.size);
    }
    order.push({ digest });
  };
  for (const digest of [...repo.tags.values(), ...repo.manifests]) await visit(digest);
  for (const b of repo.blobs) if (!blobs.has(b)) blobs.set(b, undefined);
  return { source: repo, target, manifests: order, blobs, partialIndexes };
}

/**
 * 5 minutes of failing in all: a target that never answers a POST or PATCH (30 s header timeout
 * each) is given up on after ~10 attempts, instead of retrying every chunk of every blob in turn.
 */
export const DEFAULT_PUSH_RETRY_BUDGET_MS = 300_000;

/** A summary of nothing pushed yet, to count into. */
export function emptyPushSummary(target: PushTarget, what: string, format: PushSummary['format'] = 'registry'): PushSummary {
  return {
    bundle: what,
    format,
    target: target.prefix ? `${target.registry}/${target.prefix}` : target.registry,
    repositories: 0,
    tags: [],
    retagged: [],
    manifests: { pushed: 0, present: 0 },
    blobs: { uploaded: 0, mounted: 0, present: 0, uploadedBytes: 0 },
    failures: [],
    seconds: 0,
  };
}

/** The client for a push target: network options, limits, and the run's retry budget (push and mirror). */
export function targetClient(target: PushTarget, opts: Omit<PushOptions, 'to'>, connections: number): RegistryClient {
  return new RegistryClient({
    plainHttp: opts.plainHttp || target.plainHttp,
    credentials: opts.credentials,
    connections,
    limits: opts.limits,
    transport: transportOptions(opts),
    retryBudget: new RetryBudget(opts.retryBudgetMs ?? DEFAULT_PUSH_RETRY_BUDGET_MS),
  });
}

export async function push(bundlePath: string, opts: PushOptions): Promise<PushSummary> {
  const started = Date.now();
  const target: PushTarget = parseTarget(opts.to);
  const bundle = await openBundle(bundlePath);
  const jobs = opts.jobs ?? 4;
  const client = targetClient(target, opts, jobs + 4);
  const emit = opts.onEvent ?? (() => {});
  const summary = emptyPushSummary(target, bundlePath, bundle.format);
  try {
    for (const p of bundle.problems) emit({ type: 'warning', message: p.message });
    let repos = [...bundle.repositories.values()];
    if (opts.only?.length) {
      const missing = opts.only.filter((n) => !bundle.repositories.has(n));
      if (missing.length) throw new OcisaveError('NOT_FOUND', `${bundlePath} has no repository ${missing.join(', ')} (it has ${[...bundle.repositories.keys()].join(', ')})`);
      repos = repos.filter((r) => opts.only!.includes(r.name));
    }
    if (repos.length === 0) throw new InvalidInputError(`${bundlePath} holds no repositories: nothing to push`);
    summary.repositories = repos.length;

    const session = new PushSession(client, target.registry);
    await ping(session, targetRepository(target, repos[0]!.name));
    await pushRepositories(bundle, repos, { target, client, session, uploads: new Semaphore(jobs), homes: new Map(), jobs, chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES, summary, emit });
    summary.tags.sort();
    summary.seconds = (Date.now() - started) / 1000;
    return summary;
  } finally {
    await bundle.close();
    await client.close();
  }
}

/** What one push run shares across the bundles it pushes (mirror pushes each image as it is ready). */
export interface PushRun {
  target: PushTarget;
  client: RegistryClient;
  session: PushSession;
  /** Blob uploads in flight at once, across the run. */
  uploads: Semaphore;
  /** Where this run put (or found) each blob: the source of later mounts. */
  homes: Map<string, Promise<string>>;
  jobs: number;
  chunkBytes: number;
  summary: PushSummary;
  emit: (e: PushEvent) => void;
  /** The first damaged blob found: no upload of the run starts after it (its own was never completed). */
  halt?: CorruptBlobError;
}

/**
 * Pushes repositories of a bundle: per repository its blobs, then its manifests children first,
 * then its tags. A repository that fails is recorded in run.summary.failures; others go on.
 */
export async function pushRepositories(bundle: Bundle, repos: readonly BundleRepository[], run: PushRun): Promise<void> {
  const { target, client, session, uploads, homes, summary, emit, jobs } = run;
  const bundlePath = bundle.path;
  const plans = await Promise.all(repos.map((r) => planRepository(bundle, r, targetRepository(target, r.name))));
  // Target names of bundle repositories that link a blob: mount sources for a delta's absent blobs.
  const linkedIn = (digest: string) => plans.filter((p) => p.source.blobs.has(digest)).map((p) => p.target);

  const ensureBlob = async (plan: RepoPlan, digest: string, declared: number | undefined) => {
    const repo = plan.target;
    if (run.halt) throw run.halt;
    if (await session.blobExists(repo, digest)) {
      if (!homes.has(digest)) homes.set(digest, Promise.resolve(repo));
      summary.blobs.present++;
      emit({ type: 'blob', repository: repo, digest, size: declared ?? 0, how: 'present' });
      return;
    }
    const size = await bundle.blobSize(digest);
    let location: string | undefined;
    const home = homes.get(digest);
    const mountFrom = async (from: string): Promise<boolean> => {
      if (from === repo) return false;
      const r = await session.mount(repo, digest, from);
      if (r.mounted) {
        summary.blobs.mounted++;
        emit({ type: 'blob', repository: repo, digest, size: size ?? declared ?? 0, how: 'mounted' });
        return true;
      }
      location ??= r.location;
      return false;
    };
    if (home) {
      const from = await home.catch(() => undefined);
      if (from && (await mountFrom(from))) return;
    }
    if (size === undefined) {
      // Not in this bundle (a delta): the base pushed it to the target, maybe to another repository.
      for (const from of linkedIn(digest)) if (await mountFrom(from)) return;
      throw new RegistryError(
        'not-found',
        `blob ${digest} is neither in ${bundlePath} nor in ${target.registry}/${repo}: if this is a delta bundle (save --since), push its base bundle first`,
      );
    }
    if (declared !== undefined && declared !== size) {
      throw new OcisaveError('SIZE_MISMATCH', `blob ${digest} in ${bundlePath} is ${size} bytes but its manifest says ${declared}: the bundle is damaged (run ocisave verify)`);
    }
    const work = (async () => {
      const release = await uploads.acquire();
      try {
        if (run.halt) throw run.halt;
        await session.upload(repo, digest, size, (s, e) => bundle.openBlob(digest, s, e), { chunkBytes: run.chunkBytes, location }).catch((err) => {
          if (err instanceof CorruptBlobError) run.halt ??= err;
          throw err;
        });
      } finally {
        release();
      }
      return repo;
    })();
    if (!home) homes.set(digest, work);
    await work;
    summary.blobs.uploaded++;
    summary.blobs.uploadedBytes += size;
    emit({ type: 'blob', repository: repo, digest, size, how: 'uploaded' });
  };

  const pushRepository = async (plan: RepoPlan) => {
    const repo = plan.target;
    const settled = await Promise.allSettled([...plan.blobs].map(([digest, size]) => ensureBlob(plan, digest, size)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const pushed = new Set<string>();
    /** Index the target refused → the one platform manifest its tags name instead. */
    const stand = new Map<string, string>();
    for (const { digest, absent } of plan.manifests) {
      if (pushed.has(digest)) continue;
      pushed.add(digest);
      const m = await bundle.manifest(digest);
      const accept = `${MANIFEST_ACCEPT}${m ? `, ${m.mediaType}` : ''}`;
      const head = await session.api(repo, 'HEAD', `/v2/${repo}/manifests/${digest}`, { accept });
      if (head.status === 200) {
        summary.manifests.present++;
        emit({ type: 'manifest', repository: repo, digest, how: 'present' });
        continue;
      }
      if (!m) {
        if (absent) continue; // a platform left out at save time; see partialIndexes below
        throw new RegistryError('not-found', `manifest ${digest} is neither in ${bundlePath} nor in ${target.registry}/${repo}: if this is a delta bundle (save --since), push its base bundle first`);
      }
      try {
        await putManifest(session, repo, digest, m.bytes, m.mediaType);
      } catch (err) {
        // Registries that check index entries (distribution does) refuse an index saved for some
        // platforms. With one platform held, its tags name that manifest, as `skopeo copy` without
        // --all would do; the index itself cannot go in unchanged.
        const held = plan.partialIndexes.get(digest);
        if (!held || !REFUSED_FOR_CONTENT.has(codeOf(err))) throw err;
        if (held.length !== 1) {
          throw new OcisaveError(
            codeOf(err),
            `${target.registry}/${repo}: the registry refuses index ${digest} because the bundle holds only ${held.length} of its platforms; ` +
              `save with --platform all (or one platform) to push it`,
            { cause: err },
          );
        }
        stand.set(digest, held[0]!);
        emit({ type: 'warning', message: `${repo}: the registry refuses index ${digest} (the bundle holds one of its platforms); its tags will name platform manifest ${held[0]}` });
        continue;
      }
      summary.manifests.pushed++;
      emit({ type: 'manifest', repository: repo, digest, how: 'pushed' });
    }
    for (const [tag, named] of plan.source.tags) {
      const digest = stand.get(named) ?? named;
      let m = await bundle.manifest(digest);
      if (!m) {
        // A delta bundle re-tags a manifest its base already pushed: fetch its bytes back.
        const got = await client.getManifest(target.registry, repo, digest);
        m = { digest, mediaType: got.mediaType, bytes: got.bytes };
      }
      await putManifest(session, repo, tag, m.bytes, m.mediaType, digest);
      const reference = `${target.registry}/${repo}:${tag}`;
      summary.tags.push(reference);
      if (digest !== named) summary.retagged.push({ reference, index: named, manifest: digest });
      emit({ type: 'tag', reference, digest, ...(digest !== named ? { platformOf: named } : {}) });
    }
  };

  await mapLimit(plans, Math.max(1, Math.min(4, jobs)), async (plan) => {
    try {
      await pushRepository(plan);
    } catch (err) {
      summary.failures.push({ repository: plan.target, ...reportOf(err) });
    }
  });
}

export async function ping(session: PushSession, repo: string): Promise<void> {
  const res = await session.api(repo, 'GET', '/v2/');
  if (res.status !== 200) throw httpError(session.registry, repo, 'GET /v2/ (is this a registry?)', res);
}

/** PUT a manifest by digest or tag with its exact bytes; the registry must agree on the digest. */
/** Codes a registry answers a manifest PUT with when something the manifest names is not there (distribution: an index entry). */
const REFUSED_FOR_CONTENT = new Set<ErrorCode>(['MANIFEST_BLOB_UNKNOWN', 'BLOB_UNKNOWN', 'MANIFEST_UNKNOWN']);

export async function putManifest(session: PushSession, repo: string, ref: string, bytes: Buffer, mediaType: string, expect = ref): Promise<void> {
  const digest = sha256Bytes(bytes);
  if (digest !== expect) throw new OcisaveError('DIGEST_MISMATCH', `manifest ${expect} in the bundle hashes to ${digest}: the bundle is damaged (run ocisave verify)`);
  const res = await session.api(repo, 'PUT', `/v2/${repo}/manifests/${ref}`, { 'content-type': mediaType }, bytes);
  if (res.status !== 201 && res.status !== 200 && res.status !== 202) {
    const detail = errorDetail(res.body);
    const err = registryAnswerError('http', `${session.registry}/${repo}: PUT manifest ${ref} (${mediaType}): HTTP ${res.status}${detail ? ` (${detail})` : ''}`, res.status, res.body);
    if (err.code === 'MANIFEST_BLOB_UNKNOWN' || err.code === 'BLOB_UNKNOWN') err.message += ' — something it references is missing in the target';
    throw err;
  }
  const got = res.headers['docker-content-digest'];
  if (typeof got === 'string' && got.startsWith('sha256:') && got !== digest) {
    throw new RegistryError('digest-mismatch', `${session.registry}/${repo}: the registry stored manifest ${digest} as ${got}`);
  }
}

export type { OpenedBundle };
