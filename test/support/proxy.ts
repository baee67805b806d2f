// Fault-injecting HTTP proxy in front of a real registry: failures, slow links
// and redirects to another host, with statistics of what clients asked for.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';

export interface FaultRule {
  /** HTTP method to match (case-insensitive); any when omitted. */
  method?: string;
  /** Matched against the request path including the query string (a string is a RegExp source); any when omitted. */
  path?: RegExp | string;
  /** How many matching requests the rule fires on; unlimited when omitted. */
  count?: number;
  /** Answer this status without asking upstream (429, 500, 503...). */
  status?: number;
  /** Retry-After header (seconds) sent with `status`. */
  retryAfter?: number;
  /** Send this many body bytes, then destroy the connection. */
  dropAfterBytes?: number;
  /** Flip (xor 0xff) the body byte at this offset of the response body. */
  corruptByteAt?: number;
  /** Remove Range/If-Range before forwarding: upstream answers 200 with the whole body. */
  ignoreRange?: boolean;
  /** Remove If-None-Match before forwarding: upstream answers 200 with the whole body, as a registry that ignores conditional GETs. */
  ignoreIfNoneMatch?: boolean;
  /** Wait this long before handling the request. */
  delayMs?: number;
  /** Hold the request until this settles: a test releases it on an event, not after a guessed time. */
  holdUntil?: Promise<unknown>;
  /** Pace the response body to this rate (per client connection). */
  bandwidthBytesPerSec?: number;
  /**
   * Answer 307 to the proxy's second listener (another host: 127.0.0.2 where
   * available), which serves the same content like a pre-signed object-store URL.
   */
  redirectTo?: 'secondary';
}

export interface RequestRecord {
  listener: 'primary' | 'secondary';
  host: string; // listener host:port
  method: string;
  path: string; // without query
  url: string; // with query
  status: number;
  bodyBytes: number; // response body bytes actually sent
  range?: string;
  /** The If-None-Match header the client sent. */
  ifNoneMatch?: string;
  authorization: boolean; // whether the request carried Authorization (never the value)
  faults: string[]; // which fault effects applied
}

export interface ProxyStats {
  requests: RequestRecord[];
  /** By path (no query): request count and response body bytes sent. */
  byPath: Record<string, { requests: number; bytes: number }>;
  /** Every Range header seen, in order. */
  ranges: Array<{ path: string; range: string }>;
  /** By listener host: requests with and without an Authorization header. */
  authorization: Record<string, { with: number; without: number }>;
  totalBytes: number;
  /** TCP connections clients opened to the primary listener. */
  connections: number;
}

export interface FaultProxy {
  host: string; // "127.0.0.1:PORT"
  url: string; // "http://127.0.0.1:PORT"
  /** The redirect target listener ("127.0.0.2:PORT", or 127.0.0.1 where .2 is unavailable). */
  secondaryHost: string;
  secondaryUrl: string;
  /** Replace all rules (counts start afresh). */
  setFaults(rules: FaultRule[]): void;
  /** Remaining count of each current rule (Infinity for unlimited). */
  remaining(): number[];
  stats(): ProxyStats;
  resetStats(): void;
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade',
]);
const REDIRECT_PARAM = 'ocisave-presigned';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ActiveRule {
  rule: FaultRule;
  left: number;
}

interface Pacer {
  rate: number;
  next: number; // time (ms) when the next byte may go
}

export async function startFaultProxy(targetUrl: string): Promise<FaultProxy> {
  const upstream = new URL(targetUrl);
  const upstreamOrigin = `${upstream.protocol}//${upstream.host}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let rules: ActiveRule[] = [];
  let records: RequestRecord[] = [];
  let connections = 0;
  // token → Authorization of the request that was redirected (the "signature").
  const presigned = new Map<string, string | undefined>();
  const pacers = new WeakMap<net.Socket, Pacer>();

  const matches = (r: FaultRule, req: http.IncomingMessage) =>
    (!r.method || r.method.toUpperCase() === req.method) &&
    (r.path === undefined || (typeof r.path === 'string' ? new RegExp(r.path) : r.path).test(req.url ?? ''));

  // Redirect rules are chosen first (primary only) so that body faults are not
  // spent on an empty 307 answer; they then apply on the secondary listener.
  function pick(req: http.IncomingMessage, listener: 'primary' | 'secondary'): FaultRule[] {
    const live = rules.filter((a) => a.left > 0 && matches(a.rule, req));
    const redirect = listener === 'primary' ? live.find((a) => a.rule.redirectTo) : undefined;
    const chosen = redirect ? [redirect] : live.filter((a) => !a.rule.redirectTo);
    for (const a of chosen) a.left--;
    return chosen.map((a) => a.rule);
  }

  function handler(listener: 'primary' | 'secondary', selfHost: () => string) {
    return (req: http.IncomingMessage, res: http.ServerResponse) => {
      void handle(listener, selfHost(), req, res).catch((err: unknown) => {
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end(`fault proxy: ${String(err)}`);
        } else res.destroy();
      });
    };
  }

  async function handle(listener: 'primary' | 'secondary', selfHost: string, req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const token = url.searchParams.get(REDIRECT_PARAM);
    url.searchParams.delete(REDIRECT_PARAM);
    const pathAndQuery = url.pathname + url.search;
    const rec: RequestRecord = {
      listener,
      host: selfHost,
      method: req.method ?? 'GET',
      path: url.pathname,
      url: pathAndQuery,
      status: 0,
      bodyBytes: 0,
      authorization: req.headers.authorization !== undefined,
      faults: [],
    };
    if (typeof req.headers.range === 'string') rec.range = req.headers.range;
    if (typeof req.headers['if-none-match'] === 'string') rec.ifNoneMatch = req.headers['if-none-match'];
    records.push(rec);

    const fired = pick(req, listener);
    const delay = fired.reduce((a, r) => a + (r.delayMs ?? 0), 0);
    if (delay > 0) {
      rec.faults.push(`delay ${delay}ms`);
      await sleep(delay);
    }
    for (const r of fired) {
      if (!r.holdUntil) continue;
      rec.faults.push('held');
      await r.holdUntil;
    }

    const statusRule = fired.find((r) => r.status !== undefined);
    if (statusRule) {
      req.resume();
      const body = JSON.stringify({
        errors: [{ code: statusRule.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', message: `injected ${statusRule.status}` }],
      });
      // 204 and 304 never carry a body (RFC 9110 15.3.5, 15.4.5).
      const bodiless = statusRule.status === 204 || statusRule.status === 304;
      const headers: http.OutgoingHttpHeaders = bodiless ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
      if (statusRule.retryAfter !== undefined) headers['retry-after'] = String(statusRule.retryAfter);
      rec.status = statusRule.status!;
      rec.faults.push(`status ${statusRule.status}`);
      res.writeHead(statusRule.status!, headers);
      res.end(req.method === 'HEAD' || bodiless ? undefined : body);
      return;
    }

    if (fired.some((r) => r.redirectTo)) {
      req.resume();
      const t = randomUUID();
      presigned.set(t, req.headers.authorization);
      const loc = new URL(pathAndQuery, secondaryUrl);
      loc.searchParams.set(REDIRECT_PARAM, t);
      rec.status = 307;
      rec.faults.push('redirect');
      res.writeHead(307, { location: loc.toString(), 'content-length': 0 });
      res.end();
      return;
    }

    // Forward. The Host header is kept so the registry builds URLs that point back here.
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    if (listener === 'secondary') {
      // Object storage authorises by the URL's signature, not by a header.
      delete headers.authorization;
      const auth = token ? presigned.get(token) : undefined;
      if (auth) headers.authorization = auth;
    }
    if (fired.some((r) => r.ignoreRange)) {
      rec.faults.push('ignoreRange');
      delete headers.range;
      delete headers['if-range'];
    }
    if (fired.some((r) => r.ignoreIfNoneMatch)) {
      rec.faults.push('ignoreIfNoneMatch');
      delete headers['if-none-match'];
    }
    const upReq = http.request({
      agent,
      protocol: upstream.protocol,
      hostname: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: pathAndQuery,
      headers,
    });
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    req.pipe(upReq);
    const [upRes] = (await once(upReq, 'response')) as [http.IncomingMessage];

    const outHeaders: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(upRes.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) outHeaders[k] = v;
    const loc = upRes.headers.location;
    if (typeof loc === 'string' && loc.startsWith(upstreamOrigin)) outHeaders.location = `http://${selfHost}${loc.slice(upstreamOrigin.length)}`;
    rec.status = upRes.statusCode ?? 502;
    res.writeHead(rec.status, outHeaders);

    const dropAt = Math.min(...fired.map((r) => r.dropAfterBytes ?? Infinity));
    const corruptAt = fired.find((r) => r.corruptByteAt !== undefined)?.corruptByteAt;
    const rate = Math.min(...fired.map((r) => r.bandwidthBytesPerSec ?? Infinity));
    if (Number.isFinite(dropAt)) rec.faults.push(`drop@${dropAt}`);
    if (corruptAt !== undefined) rec.faults.push(`corrupt@${corruptAt}`);
    if (Number.isFinite(rate)) rec.faults.push(`bandwidth ${rate}B/s`);
    let pacer: Pacer | undefined;
    if (Number.isFinite(rate) && req.socket) {
      pacer = pacers.get(req.socket);
      if (!pacer || pacer.rate !== rate) pacers.set(req.socket, (pacer = { rate, next: 0 }));
    }

    if (dropAt === 0) {
      rec.faults.push('dropped');
      upRes.destroy();
      res.flushHeaders();
      res.socket?.write(Buffer.alloc(0), () => res.socket?.destroy());
      return;
    }

    let offset = 0;
    for await (const c of upRes) {
      let chunk = c as Buffer;
      if (res.destroyed) break;
      if (corruptAt !== undefined && corruptAt >= offset && corruptAt < offset + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[corruptAt - offset]! ^= 0xff;
      }
      let drop = false;
      if (offset + chunk.length >= dropAt) {
        chunk = chunk.subarray(0, dropAt - offset);
        drop = true;
      }
      if (pacer) await paced(res, pacer, chunk, rec);
      else await write(res, chunk, rec);
      offset += chunk.length;
      if (drop) {
        rec.faults.push('dropped');
        upRes.destroy();
        // Let the bytes reach the client, then cut the connection mid-body.
        res.socket?.write(Buffer.alloc(0), () => res.socket?.destroy());
        return;
      }
    }
    res.end();
  }

  async function write(res: http.ServerResponse, chunk: Buffer, rec: RequestRecord): Promise<void> {
    if (chunk.length === 0 || res.destroyed) return;
    rec.bodyBytes += chunk.length;
    if (res.write(chunk)) return;
    // Wait for drain or for the client to go away, leaving no listeners behind.
    await new Promise<void>((resolve) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  }

  // Token bucket per client connection, in slices of at most ~20 ms of data.
  async function paced(res: http.ServerResponse, p: Pacer, chunk: Buffer, rec: RequestRecord): Promise<void> {
    const slice = Math.max(1024, Math.floor(p.rate / 50));
    for (let i = 0; i < chunk.length && !res.destroyed; i += slice) {
      const part = chunk.subarray(i, i + slice);
      const now = performance.now();
      // Sleep only for a real debt (timers are coarse), and keep up to 20 ms of
      // lag as credit so timer overshoot does not lower the rate.
      if (p.next > now + 4) await sleep(p.next - now);
      p.next = Math.max(p.next, performance.now() - 20) + (part.length * 1000) / p.rate;
      await write(res, part, rec);
    }
  }

  let host = '';
  const primary: http.Server = http.createServer(handler('primary', () => host));
  primary.keepAliveTimeout = 30_000;
  primary.on('connection', () => connections++);
  primary.listen(0, '127.0.0.1');
  await once(primary, 'listening');
  host = `127.0.0.1:${(primary.address() as net.AddressInfo).port}`;

  let secondaryHost = '';
  const secondary: http.Server = http.createServer(handler('secondary', () => secondaryHost));
  secondary.keepAliveTimeout = 30_000;
  try {
    secondary.listen(0, '127.0.0.2');
    await once(secondary, 'listening');
    secondaryHost = `127.0.0.2:${(secondary.address() as net.AddressInfo).port}`;
  } catch {
    // Some systems only route 127.0.0.1: a different port is still another origin.
    secondary.listen(0, '127.0.0.1');
    await once(secondary, 'listening');
    secondaryHost = `127.0.0.1:${(secondary.address() as net.AddressInfo).port}`;
  }
  const secondaryUrl = `http://${secondaryHost}`;

  return {
    host,
    url: `http://${host}`,
    secondaryHost,
    secondaryUrl,
    setFaults(next) {
      rules = next.map((rule) => ({ rule, left: rule.count ?? Infinity }));
    },
    remaining: () => rules.map((a) => a.left),
    stats() {
      const s: ProxyStats = { requests: records.map((r) => ({ ...r, faults: [...r.faults] })), byPath: {}, ranges: [], authorization: {}, totalBytes: 0, connections };
      for (const r of records) {
        const p = (s.byPath[r.path] ??= { requests: 0, bytes: 0 });
        p.requests++;
        p.bytes += r.bodyBytes;
        s.totalBytes += r.bodyBytes;
        if (r.range !== undefined) s.ranges.push({ path: r.path, range: r.range });
        const a = (s.authorization[r.host] ??= { with: 0, without: 0 });
        if (r.authorization) a.with++;
        else a.without++;
      }
      return s;
    },
    resetStats() {
      records = [];
      connections = 0;
    },
    async stop() {
      for (const srv of [primary, secondary]) srv.closeAllConnections();
      await Promise.all([primary, secondary].map((srv) => new Promise<void>((r) => srv.close(() => r()))));
      agent.destroy();
    },
  };
}
