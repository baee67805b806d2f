// A registry that lies, for what no real registry does on purpose: junk digests, index cycles and
// bombs, Content-Length lies, 429/5xx storms, 1 byte/s answers, silence, cleartext token realms.
// node:http on 127.0.0.1 and a free port. It never replaces the real docker-registry elsewhere.
//
// Everything it serves is a row of one route table: method, path (exact, or a pattern), handler.
// Helpers add the usual rows (a manifest by tag and digest, a blob); a case adds rows of its own.
// Exact paths are looked up first (the row added last for a path wins: a case overrides a helper's
// row by adding its own), then patterns, newest first. A new hostile behaviour is one more row.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, match: RegExpExecArray) => unknown;

export interface Route {
  method: string;
  path: RegExp;
  handle: Handler;
}

export const MT = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar+gzip',
};

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number | string;
  platform?: { os: string; architecture: string };
  annotations?: Record<string, string>;
}

/** Bytes of an OCI image manifest; `extra` adds or overrides fields (a subject, junk). */
export function manifestBytes(config: Descriptor, layers: Descriptor[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.manifest, config, layers, ...extra }));
}

export function indexBytes(manifests: Descriptor[], extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.index, manifests, ...extra }));
}

export function descriptorOf(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType, digest: sha256(bytes), size: bytes.length, ...extra };
}

export interface HostileOptions {
  /** The WWW-Authenticate header /v2/ answers 401 with (given the port); anonymous (200) without. */
  challenge?: (port: number) => string;
  /** With a challenge: the Authorization every /v2/<name>/… request needs, else 401 with the challenge. */
  requireAuth?: string;
  /** Accept connections and never answer anything. */
  silent?: boolean;
}

export interface HostileRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  port: number;
  /** Requests seen, as "METHOD /path" (query included), in order. */
  requests: string[];
  /** Authorization headers seen, in order (the tests check what was sent; nothing is printed). */
  authorizations: string[];
  route(method: string, path: RegExp | string, handle: Handler): void;
  /** `bytes` as repository `repo`'s manifest, by digest, and by `tag` when given. */
  manifest(repo: string, bytes: Buffer, mediaType: string, tag?: string): string;
  /** `bytes` as a blob of `repo`, Range honoured. */
  blob(repo: string, bytes: Buffer): string;
  /** Requests whose path matched `pattern`. */
  count(pattern: RegExp): number;
  stop(): Promise<void>;
}

export async function startHostileRegistry(opts: HostileOptions = {}): Promise<HostileRegistry> {
  const routes: Route[] = [];
  /** "METHOD /path" → handler: a 10,000-manifest index must not scan 20,000 patterns per request. */
  const exact = new Map<string, Handler>();
  const requests: string[] = [];
  const authorizations: string[] = [];
  const sockets = new Set<Socket>();
  let port = 0;

  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    if (req.headers.authorization) authorizations.push(req.headers.authorization);
    if (opts.silent) return; // the socket stays open, unanswered, until stop()
    const url = new URL(req.url ?? '/', 'http://x');
    if (opts.challenge && opts.requireAuth && url.pathname.startsWith('/v2/') && url.pathname !== '/v2/' && req.headers.authorization !== opts.requireAuth) {
      res.writeHead(401, { 'www-authenticate': opts.challenge(port), 'content-type': 'application/json' }).end('{}');
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const direct = exact.get(`${method} ${url.pathname}`);
    if (direct) {
      Promise.resolve(direct(req, res, Object.assign([url.pathname], { index: 0, input: url.pathname }) as RegExpExecArray)).catch(() => res.destroy());
      return;
    }
    for (let i = routes.length - 1; i >= 0; i--) {
      const r = routes[i]!;
      const m = (r.method === req.method || (r.method === 'GET' && req.method === 'HEAD')) && r.path.exec(url.pathname);
      if (!m) continue;
      Promise.resolve(r.handle(req, res, m)).catch(() => res.destroy());
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NOT_FOUND', message: 'no such route' }] }));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;

  const route = (method: string, path: RegExp | string, handle: Handler) => {
    if (typeof path === 'string') exact.set(`${method} ${path}`, handle);
    else routes.push({ method, path, handle });
  };

  route('GET', '/v2/', (_req, res) => {
    if (opts.challenge) res.writeHead(401, { 'www-authenticate': opts.challenge(port), 'content-type': 'application/json' }).end('{}');
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });

  const manifest = (repo: string, bytes: Buffer, mediaType: string, tag?: string) => {
    const digest = sha256(bytes);
    const send: Handler = (req, res) => {
      res.writeHead(200, { 'content-type': mediaType, 'content-length': bytes.length, 'docker-content-digest': digest });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    };
    route('GET', `/v2/${repo}/manifests/${digest}`, send);
    if (tag) route('GET', `/v2/${repo}/manifests/${tag}`, send);
    return digest;
  };

  const blob = (repo: string, bytes: Buffer) => {
    const digest = sha256(bytes);
    route('GET', `/v2/${repo}/blobs/${digest}`, (req, res) => {
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (!range) {
        res.writeHead(200, { 'content-length': bytes.length, 'docker-content-digest': digest }).end(req.method === 'HEAD' ? undefined : bytes);
        return;
      }
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), bytes.length - 1) : bytes.length - 1;
      if (start >= bytes.length) {
        res.writeHead(416).end();
        return;
      }
      res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${bytes.length}` }).end(bytes.subarray(start, end + 1));
    });
    return digest;
  };

  return {
    host: `127.0.0.1:${port}`,
    port,
    requests,
    authorizations,
    route,
    manifest,
    blob,
    count: (pattern) => requests.filter((r) => pattern.test(r)).length,
    async stop() {
      const closed = once(server, 'close').catch(() => undefined);
      server.close();
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** Writes `bytes` one at a time, one a second (or every `everyMs`), until the client goes away. */
export function dribble(res: http.ServerResponse, bytes: Buffer, headers: http.OutgoingHttpHeaders, everyMs = 1000): void {
  res.writeHead(200, { ...headers, 'content-length': bytes.length });
  let i = 0;
  const timer = setInterval(() => {
    if (res.destroyed || i >= bytes.length) {
      clearInterval(timer);
      if (!res.destroyed) res.end();
      return;
    }
    res.write(bytes.subarray(i, ++i));
  }, everyMs);
  res.on('close', () => clearInterval(timer));
}

/**
 * A raw HTTP/1.1 answer written straight to the socket, which is then closed: the only way to send a
 * Content-Length that is not the length of the body.
 */
export function rawAnswer(req: http.IncomingMessage, declaredLength: number, body: Buffer, contentType = 'application/octet-stream'): void {
  const socket = req.socket;
  socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\nContent-Length: ${declaredLength}\r\nConnection: close\r\n\r\n`);
  socket.end(body);
}

/** A handler answering `status` (with a Retry-After when given) to the first `times` requests, then `next`. */
export function storm(status: number, retryAfter: string | undefined, times: number, next?: Handler): Handler {
  let seen = 0;
  return (req, res, match) => {
    if (seen++ < times || !next) {
      res.writeHead(status, { 'content-type': 'application/json', ...(retryAfter !== undefined ? { 'retry-after': retryAfter } : {}) });
      res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }));
      return;
    }
    return next(req, res, match);
  };
}
