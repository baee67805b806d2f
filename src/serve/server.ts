// A read-only registry over a saved bundle (node:http), so `skopeo copy docker://HOST/…` and
// `docker pull` work on the air-gapped side without running registry:2. The subset of the
// distribution API a puller uses: GET /v2/, manifests by tag or digest, blobs with Range,
// tags/list and _catalog (with n/last pagination). Everything else answers the distribution
// error JSON: 404 for what is not there, 405 for writes. Connection cap and timeouts: limits.ts;
// hashing blobs before they are served (--verify-blobs): verify-blobs.ts.
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { isSha256Digest, type Bundle, type BundleRepository } from '../bundle/types.js';
import { BlobVerifier } from './verify-blobs.js';
import { applyLimits, DEFAULT_LIMITS, idleDuringResponse, limitServerOptions, type LimitEvent, type ServeLimits } from './limits.js';

export interface ServeOptions {
  host: string;
  port: number;
  /** Connection cap and timeouts; each defaults to DEFAULT_LIMITS. */
  limits?: Partial<ServeLimits>;
  /** Called after each request (access log). */
  onRequest?: (r: { method: string; path: string; status: number; bytes: number }) => void;
  /** Called when a connection is refused (cap reached) or dropped (idle). */
  onLimit?: (e: LimitEvent) => void;
  /** Hash each blob and manifest the first time it is served; refuse one that does not match its digest. */
  verifyBlobs?: boolean;
  /** Called once for each blob or manifest refused by verifyBlobs. */
  onCorrupt?: (digest: string) => void;
}

const CORRUPT = "the bundle's copy does not match its digest";

/**
 * Bytes read from disk at a time for a blob response. The file stream reads one chunk ahead and
 * the socket holds the one being written, so a client that stops reading pins ~2 chunks: with
 * 1 MiB chunks (the bundle readers' default) 600 stalled clients cost ~1.2 GB; with 64 KiB, the
 * size node's own file streams use, ~90 MB (test/serve-limits.test.ts), and a normal pull was as
 * fast as with 1 MiB within this machine's noise (curl, 64 MiB blob, 5 runs each).
 */
export const SERVE_CHUNK_BYTES = 64 * 1024;

export interface RunningServer {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

type ErrorCode = 'NAME_UNKNOWN' | 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' | 'DIGEST_INVALID' | 'UNSUPPORTED' | 'NAME_INVALID' | 'PAGINATION_NUMBER_INVALID';

const MESSAGES: Record<ErrorCode, string> = {
  NAME_UNKNOWN: 'repository name not known to registry',
  MANIFEST_UNKNOWN: 'manifest unknown',
  BLOB_UNKNOWN: 'blob unknown to registry',
  DIGEST_INVALID: 'provided digest did not match uploaded content',
  UNSUPPORTED: 'The operation is unsupported.',
  NAME_INVALID: 'invalid repository name',
  PAGINATION_NUMBER_INVALID: 'invalid number of results requested',
};

class Reply {
  bytes = 0;
  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {}

  get head(): boolean {
    return this.req.method === 'HEAD';
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    const bytes = Buffer.from(JSON.stringify(body));
    this.send(status, bytes, { 'content-type': 'application/json; charset=utf-8', ...headers });
  }

  send(status: number, bytes: Buffer, headers: Record<string, string>): void {
    this.res.writeHead(status, { 'content-length': String(bytes.length), ...headers });
    if (this.head) this.res.end();
    else {
      this.bytes = bytes.length;
      this.res.end(bytes);
    }
  }

  error(status: number, code: ErrorCode, detail?: unknown, headers: Record<string, string> = {}): void {
    this.json(status, { errors: [{ code, message: MESSAGES[code], ...(detail !== undefined ? { detail } : {}) }] }, headers);
  }
}

/** One `bytes=a-b` range ([start, end] inclusive), 'unsatisfiable', or undefined to send everything. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  // Multiple ranges or another unit: a server may ignore Range and send the whole entity.
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

function page<T>(items: T[], url: URL, key: (t: T) => string, reply: Reply): { items: T[]; link?: string } | undefined {
  const nParam = url.searchParams.get('n');
  const last = url.searchParams.get('last');
  let list = last ? items.filter((i) => key(i) > last) : items;
  if (nParam === null) return { items: list };
  const n = Number(nParam);
  if (!Number.isInteger(n) || n < 0) {
    reply.error(400, 'PAGINATION_NUMBER_INVALID', { n: nParam });
    return undefined;
  }
  const more = list.length > n;
  list = list.slice(0, n);
  if (!more || list.length === 0) return { items: list };
  const next = new URL(url.pathname, 'http://x');
  next.searchParams.set('last', key(list[list.length - 1]!));
  next.searchParams.set('n', String(n));
  return { items: list, link: `<${next.pathname}${next.search}>; rel="next"` };
}

/** Start serving `bundle`; port 0 picks a free one (see the returned url). */
export async function serveBundle(bundle: Bundle, opts: ServeOptions): Promise<RunningServer> {
  const repos = [...bundle.repositories.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const verifier = opts.verifyBlobs ? new BlobVerifier(bundle, opts.onCorrupt) : undefined;
  const lookupRepo = (name: string): BundleRepository | undefined => bundle.repositories.get(name);

  const manifests = async (reply: Reply, repo: BundleRepository, ref: string) => {
    const digest = isSha256Digest(ref) ? ref : repo.tags.get(ref);
    const known = digest && (repo.manifests.has(digest) || [...repo.tags.values()].includes(digest));
    const m = known ? await bundle.manifest(digest) : undefined;
    if (!m) return reply.error(404, 'MANIFEST_UNKNOWN', { name: repo.name, reference: ref });
    if (verifier && !verifier.verifyBytes(m.digest, m.bytes)) return reply.error(404, 'MANIFEST_UNKNOWN', { name: repo.name, reference: ref, reason: CORRUPT });
    const etag = `"${m.digest}"`;
    const headers = { 'content-type': m.mediaType, 'docker-content-digest': m.digest, etag };
    if (reply.req.headers['if-none-match'] === etag) {
      reply.res.writeHead(304, headers).end();
      return;
    }
    reply.send(200, m.bytes, headers);
  };

  const blobs = async (reply: Reply, repo: BundleRepository, digest: string) => {
    if (!isSha256Digest(digest)) return reply.error(404, 'BLOB_UNKNOWN', { digest });
    const size = repo.blobs.has(digest) || repo.manifests.has(digest) ? await bundle.blobSize(digest) : undefined;
    if (size === undefined) return reply.error(404, 'BLOB_UNKNOWN', { digest });
    // 404 rather than 5xx: the copy will not get better, and clients retry a 5xx.
    if (verifier && (reply.head ? verifier.isBad(digest) : !(await verifier.verify(digest)))) {
      return reply.error(404, 'BLOB_UNKNOWN', { digest, reason: CORRUPT });
    }
    const common = {
      'docker-content-digest': digest,
      etag: `"${digest}"`,
      'accept-ranges': 'bytes',
      'cache-control': 'max-age=31536000',
    };
    const range = parseRange(reply.req.headers.range, size);
    if (range === 'unsatisfiable') {
      reply.res.writeHead(416, { ...common, 'content-range': `bytes */${size}`, 'content-length': '0' }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    const length = size === 0 ? 0 : end - start + 1;
    reply.res.writeHead(range ? 206 : 200, {
      ...common,
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      ...(range ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (reply.head || length === 0) {
      reply.res.end();
      return;
    }
    reply.bytes = length;
    await pipeline(bundle.openBlob(digest, start, end, { chunkBytes: SERVE_CHUNK_BYTES }), reply.res);
  };

  const handle = async (reply: Reply) => {
    const { req } = reply;
    reply.res.setHeader('docker-distribution-api-version', 'registry/2.0');
    const url = new URL(req.url ?? '/', 'http://localhost');
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      return reply.error(404, 'UNSUPPORTED');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return reply.error(405, 'UNSUPPORTED', { reason: 'this registry serves a saved bundle read-only' }, { allow: 'GET, HEAD' });
    }
    if (path === '/v2/' || path === '/v2') return reply.json(200, {});
    if (path === '/v2/_catalog') {
      const p = page(repos, url, (r) => r.name, reply);
      if (!p) return;
      return reply.json(200, { repositories: p.items.map((r) => r.name) }, p.link ? { link: p.link } : {});
    }
    let m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (m) {
      const repo = lookupRepo(m[1]!);
      if (!repo) return reply.error(404, 'NAME_UNKNOWN', { name: m[1] });
      const p = page([...repo.tags.keys()].sort(), url, (t) => t, reply);
      if (!p) return;
      return reply.json(200, { name: repo.name, tags: p.items }, p.link ? { link: p.link } : {});
    }
    m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path);
    if (m) {
      const repo = lookupRepo(m[1]!);
      if (!repo) return reply.error(404, 'NAME_UNKNOWN', { name: m[1] });
      return m[2] === 'manifests' ? manifests(reply, repo, m[3]!) : blobs(reply, repo, m[3]!);
    }
    return reply.error(404, 'UNSUPPORTED', { path });
  };

  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const server = http.createServer(limitServerOptions(limits), (req, res) => {
    idleDuringResponse(res, limits, opts.onLimit);
    const reply = new Reply(req, res);
    handle(reply)
      .catch((err: Error) => {
        // Headers may be gone already (a blob stream that broke mid-way): then just cut the connection.
        if (!res.headersSent) reply.json(500, { errors: [{ code: 'UNKNOWN', message: err.message }] });
        else res.destroy(err);
      })
      .finally(() => opts.onRequest?.({ method: req.method ?? '', path: req.url ?? '', status: res.statusCode, bytes: reply.bytes }));
  });
  applyLimits(server, limits, opts.onLimit);
  server.listen(opts.port, opts.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err as Error))]);
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${hostForUrl}:${addr.port}`,
    host: `${hostForUrl}:${addr.port}`,
    port: addr.port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
