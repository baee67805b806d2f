// Blob uploads over the distribution API: HEAD, cross-repository mount, and chunked uploads
// (POST → PATCH with Content-Range, one chunk at a time, each streamed from the bundle file →
// PUT ?digest=). A blob is never held in memory whole. A chunk that fails is resumed from what
// the registry says it has (GET on the upload URL → Range: 0-N).
import { Transform, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from '../registry/http.js';
import { errorDetail, registryAnswerError, RegistryError } from '../registry/errors.js';
import { backoffMs, isRetryableError, isRetryableStatus, sleep } from '../registry/retry.js';
import { requestTimeouts, SpeedWatch } from '../registry/timeouts.js';
import { USER_AGENT, type RegistryClient } from '../registry/client.js';
import { CorruptBlobError, UploadHash } from './upload-hash.js';

export const DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024;
const PUSH = 'pull,push';

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function header(res: Response, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A registry session for one push: authenticated requests for a target repository. */
export class PushSession {
  constructor(
    readonly client: RegistryClient,
    readonly registry: string,
  ) {}

  /** The registry's API origin (its scheme is known once the first request went through api()). */
  get base(): string {
    return this.client.knownBaseUrl(this.registry);
  }

  /** A request through RegistryClient.api (auth challenge learnt and followed, retries on 5xx). */
  api(repo: string, method: Dispatcher.HttpMethod, path: string, headers: Record<string, string> = {}, body?: Buffer, alsoPull: readonly string[] = []): Promise<Response> {
    return this.client.api(this.registry, repo, method, path, headers, `${this.registry}/${repo}`, { actions: PUSH, body, alsoPull });
  }

  /**
   * A request to an upload URL with a streamed body. Authorization goes only to the registry's
   * own origin; a 401 refreshes the token once; resets and 5xx are left to the caller, which knows
   * how to resume.
   */
  async stream(repo: string, method: Dispatcher.HttpMethod, url: string, headers: Record<string, string>, body?: () => Readable): Promise<Response> {
    for (let authTry = 0; ; authTry++) {
      const h: Record<string, string> = { 'user-agent': USER_AGENT, ...headers };
      if (new URL(url).origin === new URL(this.base).origin) {
        const auth = await this.client.authorization(this.registry, repo, PUSH);
        if (auth) h.authorization = auth;
      }
      const out = await this.exchange(method, url, h, body);
      if (out.status === 401 && authTry === 0) {
        this.client.invalidate(this.registry, repo, PUSH);
        continue;
      }
      return out;
    }
  }

  /**
   * One request under the low-speed rule, counting the bytes sent (a target that reads a chunk at
   * 1 byte/s is as stuck as one that sends at 1 byte/s) and the bytes of its answer.
   */
  private async exchange(method: Dispatcher.HttpMethod, url: string, headers: Record<string, string>, body?: () => Readable): Promise<Response> {
    const { limits } = this.client;
    const abort = new AbortController();
    const watch = new SpeedWatch(limits, (err) => abort.abort(err));
    try {
      let sent: Readable | undefined;
      if (body) {
        const source = body();
        const counter = new Transform({
          transform(chunk: Buffer, _enc, done) {
            watch.add(chunk.length);
            done(null, chunk);
          },
        });
        source.on('error', (err) => counter.destroy(err));
        sent = source.pipe(counter);
      }
      const res = await request(url, { method, headers, body: sent, dispatcher: this.client.dispatcher, signal: abort.signal, ...requestTimeouts(limits) });
      const chunks: Buffer[] = [];
      for await (const c of res.body) {
        watch.add((c as Buffer).length);
        chunks.push(c as Buffer);
      }
      return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } catch (err) {
      // The low-speed rule's error, not undici's AbortError, so that it is retried and named.
      throw abort.signal.aborted ? abort.signal.reason : err;
    } finally {
      watch.stop();
    }
  }

  /** Absolute URL of a Location header (distribution sends absolute ones; the spec allows relative). */
  resolve(location: string | undefined, what: string): string {
    if (!location) throw new RegistryError('bad-response', `${this.registry}: ${what} answered without a Location header`);
    return new URL(location, this.base).toString();
  }

  /** `Location` as a path on the registry, for api(); undefined when it points elsewhere. */
  pathOf(url: string): string | undefined {
    const u = new URL(url);
    return u.origin === new URL(this.base).origin ? `${u.pathname}${u.search}` : undefined;
  }

  async blobExists(repo: string, digest: string): Promise<boolean> {
    const res = await this.api(repo, 'HEAD', `/v2/${repo}/blobs/${digest}`);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw httpError(this.registry, repo, `HEAD blob ${digest}`, res);
  }

  /** POST a new upload session; returns its URL. */
  async startUpload(repo: string): Promise<string> {
    const res = await this.api(repo, 'POST', `/v2/${repo}/blobs/uploads/`, { 'content-length': '0' });
    if (res.status !== 202) throw httpError(this.registry, repo, 'starting a blob upload', res);
    return this.resolve(header(res, 'location'), 'POST blobs/uploads');
  }

  /** Cross-repository mount: true when mounted; else the upload session the registry opened instead (if any). */
  async mount(repo: string, digest: string, from: string): Promise<{ mounted: true } | { mounted: false; location?: string }> {
    const path = `/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
    let res: Response;
    try {
      res = await this.api(repo, 'POST', path, { 'content-length': '0' }, undefined, [from]);
    } catch (err) {
      // No pull right on the source repository: fall back to uploading.
      if (err instanceof RegistryError && (err.kind === 'unauthorized' || err.kind === 'denied')) return { mounted: false };
      throw err;
    }
    if (res.status === 201) return { mounted: true };
    if (res.status === 202) return { mounted: false, location: this.resolve(header(res, 'location'), 'mount') };
    return { mounted: false };
  }

  /** Where the registry says an upload stands: the next byte it expects. */
  private async uploadOffset(repo: string, url: string): Promise<number | undefined> {
    const res = await this.stream(repo, 'GET', url, {});
    if (res.status !== 204 && res.status !== 200) return undefined;
    const range = /^(?:bytes=)?0-(\d+)$/.exec(header(res, 'range') ?? '');
    return range ? Number(range[1]) + 1 : 0;
  }

  /**
   * Upload `size` bytes of `digest` in chunks of `chunkBytes`, each PATCH streaming its range
   * from `open(start, end)`. `location` continues a session already opened (a failed mount's).
   */
  async upload(
    repo: string,
    digest: string,
    size: number,
    open: (start: number, end: number) => Readable,
    opts: { chunkBytes?: number; location?: string; onBytes?: (n: number) => void } = {},
  ): Promise<void> {
    const chunk = Math.max(1, opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    for (let session = 1; ; session++) {
      let url = opts.location && session === 1 ? opts.location : await this.startUpload(repo);
      let offset = 0;
      let failures = 0;
      // Hashes what is sent; checked before the PUT that would commit it (issue 16).
      const sent = new UploadHash(digest, open);
      try {
        while (offset < size) {
          await sent.syncTo(offset);
          const end = Math.min(offset + chunk, size) - 1;
          let res: Response | undefined;
          let error: unknown;
          const attemptStarted = Date.now();
          try {
            res = await this.stream(
              repo,
              'PATCH',
              url,
              { 'content-type': 'application/octet-stream', 'content-length': String(end - offset + 1), 'content-range': `${offset}-${end}` },
              () => sent.tap(offset, open(offset, end)),
            );
          } catch (err) {
            if (!isRetryableError(err)) throw err;
            error = err;
          }
          if (res && res.status === 202) {
            url = this.resolve(header(res, 'location'), 'PATCH upload');
            const range = /^(?:bytes=)?0-(\d+)$/.exec(header(res, 'range') ?? '');
            const next = range ? Number(range[1]) + 1 : end + 1;
            opts.onBytes?.(next - offset);
            offset = next;
            failures = 0;
            continue;
          }
          if (res && res.status === 404) throw new SessionLost();
          if (res && !isRetryableStatus(res.status) && res.status !== 416) throw httpError(this.registry, repo, `uploading ${digest} (bytes ${offset}-${end})`, res);
          // A reset, a 5xx or a range the registry disagrees with: ask where it stands, go on from there.
          const wait = backoffMs(++failures, res?.headers['retry-after']);
          const budget = this.client.retryBudget;
          if (failures > this.client.limits.retries || (budget && !budget.charge(Date.now() - attemptStarted + wait))) {
            const why = budget?.exhausted ? ` (${budget.describe()})` : ` after ${failures} attempts`;
            throw res
              ? httpError(this.registry, repo, `uploading ${digest}${why}`, res)
              : new RegistryError('unreachable', `${this.registry}: uploading ${digest} failed${why}: ${(error as Error)?.message}`);
          }
          await sleep(wait);
          const at = await this.uploadOffset(repo, url);
          if (at === undefined) throw new SessionLost();
          offset = at;
        }
        try {
          await sent.check(size);
        } catch (err) {
          // Never completed, and the session cancelled: nothing of it is committed at the target.
          await this.stream(repo, 'DELETE', url, {}).catch(() => undefined);
          throw err;
        }
        const sep = url.includes('?') ? '&' : '?';
        const res = await this.stream(repo, 'PUT', `${url}${sep}digest=${encodeURIComponent(digest)}`, { 'content-length': '0' });
        if (res.status === 404) throw new SessionLost();
        if (res.status !== 201 && res.status !== 204) throw httpError(this.registry, repo, `completing the upload of ${digest}`, res);
        const got = header(res, 'docker-content-digest');
        if (got && got !== digest) throw new RegistryError('digest-mismatch', `${this.registry}/${repo}: the registry stored ${digest} as ${got}`);
        return;
      } catch (err) {
        // The registry forgot the session (restart, purge): start over a couple of times.
        if (err instanceof SessionLost && session < 3) continue;
        if (err instanceof SessionLost) throw new RegistryError('bad-response', `${this.registry}/${repo}: the upload session for ${digest} keeps disappearing`);
        throw err;
      }
    }
  }
}

class SessionLost extends Error {}

export { CorruptBlobError };

export function httpError(registry: string, repo: string, what: string, res: Response): RegistryError {
  const detail = errorDetail(res.body);
  if (res.status === 401) return registryAnswerError('unauthorized', `${registry}/${repo}: ${what}: not authorized to push (log in, or --username/--password-stdin)`, 401, res.body);
  if (res.status === 403) return registryAnswerError('denied', `${registry}/${repo}: ${what}: push denied by the registry${detail ? ` (${detail})` : ''}`, 403, res.body);
  return registryAnswerError('http', `${registry}/${repo}: ${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}`, res.status, res.body);
}
