// The one place undici dispatchers are built, on the main thread and in the download workers:
// per origin, direct or through the environment's proxy (CONNECT tunnel), with the TLS material of
// that registry (certs.d, --cert-dir, --tls-verify=false, insecure registries). Its options are
// plain data so they travel to the workers inside each task.
import { connect as tlsConnect } from 'node:tls';
import { isIP } from 'node:net';
import type * as undici from 'undici';
import { Agent, ProxyAgent, DispatcherClass } from './http.js';
import { certsDRoots, findCertDir, readCertDir, type TlsMaterial } from './certs.js';
import { proxyFor, redactProxy, type ProxySettings } from './proxy.js';
import type { HostOptions, HostOptionsMap } from './host-options.js';

export interface TransportOptions {
  /** false: no certificate verification for any registry (--tls-verify=false). Default true. */
  tlsVerify?: boolean;
  /** A certs.d-style directory used for every registry instead of the certs.d lookup (--cert-dir). */
  certDir?: string;
  /** Per registry host[:port]; wins over the two above (registries.conf `insecure`, skopeo-sync YAML). */
  hostOptions?: HostOptionsMap;
  /** certs.d roots searched for HOST[:PORT]/ (default /etc/containers/certs.d, /etc/docker/certs.d). */
  certsDRoots?: string[];
  proxy?: ProxySettings;
  /** Connections per origin (undici's default: unlimited). */
  connections?: number;
  keepAliveTimeout?: number;
  /** TCP and TLS set-up (--connect-timeout); undici's default (10 s) without. */
  connectTimeoutMs?: number;
}

/** The API host of Docker Hub is named by references as docker.io: both spellings find its options. */
const ALIASES: Record<string, string> = { 'registry-1.docker.io': 'docker.io', 'docker.io': 'registry-1.docker.io' };

/** The options that apply to `host` (host[:port]): its own entry over the run-wide flags. */
export function hostOptionsOf(opts: TransportOptions, host: string): HostOptions {
  const own = opts.hostOptions?.[host] ?? (ALIASES[host] ? opts.hostOptions?.[ALIASES[host]!] : undefined) ?? {};
  return { tlsVerify: own.tlsVerify ?? opts.tlsVerify, certDir: own.certDir ?? opts.certDir };
}

/** TLS settings for a connection to `host`; throws a one-line error for a broken certificate directory. */
export function tlsFor(opts: TransportOptions, host: string): TlsMaterial & { rejectUnauthorized: boolean } {
  const o = hostOptionsOf(opts, host);
  const dir = o.certDir ?? findCertDir(host, opts.certsDRoots ?? certsDRoots()) ?? (ALIASES[host] ? findCertDir(ALIASES[host]!, opts.certsDRoots ?? certsDRoots()) : undefined);
  const material = dir ? readCertDir(dir) : {};
  return { ...material, rejectUnauthorized: o.tlsVerify !== false };
}

type AnyDispatcher = undici.Dispatcher;

/**
 * A dispatcher that routes each request by its origin to an Agent or ProxyAgent built for it.
 * Plain-HTTP origins share one route per proxy; each HTTPS host gets its own (its TLS material).
 */
export class Transport extends (DispatcherClass as unknown as new () => AnyDispatcher) {
  private readonly routes = new Map<string, AnyDispatcher>();

  constructor(readonly options: TransportOptions = {}) {
    super();
  }

  /** The proxy a request to `url` goes through, as it may be printed (no credentials). */
  proxyOf(url: URL): { url: string; from: string } | undefined {
    const p = this.options.proxy && proxyFor(url, this.options.proxy);
    return p && { url: redactProxy(p.url), from: p.from };
  }

  /** Whether `host` may be spoken to without verifying its certificate, and over plain HTTP. */
  insecure(host: string): boolean {
    return hostOptionsOf(this.options, host).tlsVerify === false;
  }

  route(origin: URL): AnyDispatcher {
    const proxy = this.options.proxy && proxyFor(origin, this.options.proxy);
    const key = `${proxy?.url ?? 'direct'} ${origin.protocol === 'https:' ? origin.host : 'http'}`;
    let d = this.routes.get(key);
    if (!d) {
      const tls = origin.protocol === 'https:' ? tlsFor(this.options, origin.host) : undefined;
      const common = { connections: this.options.connections, pipelining: 1, keepAliveTimeout: this.options.keepAliveTimeout ?? 30_000, connectTimeout: this.options.connectTimeoutMs };
      const connect = tls && { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized };
      // A tunnel for plain HTTP too: one code path, and the connection stays ours to reuse.
      d = proxy ? new ProxyAgent({ ...common, uri: proxy.url, requestTls: connect, proxyTunnel: true }) : new Agent({ ...common, connect });
      this.routes.set(key, d);
    }
    return d;
  }

  /**
   * The TLS error behind a connection the server closed: undici reports a TLS 1.3 alert that
   * arrives after the handshake (a registry that wants a client certificate) as "other side
   * closed", so one bare TLS connection asks again. Direct connections only; bounded by 5 s.
   */
  diagnoseTls(origin: URL): Promise<unknown> {
    if (origin.protocol !== 'https:' || this.proxyOf(origin)) return Promise.resolve(undefined);
    let tls: ReturnType<typeof tlsFor>;
    try {
      tls = tlsFor(this.options, origin.host);
    } catch (err) {
      return Promise.resolve(err);
    }
    const host = origin.hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve) => {
      const socket = tlsConnect({ host, port: Number(origin.port || 443), servername: isIP(host) ? undefined : host, ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized }, () =>
        socket.write(`GET /v2/ HTTP/1.1\r\nHost: ${origin.host}\r\nConnection: close\r\n\r\n`),
      );
      const done = (err?: unknown) => {
        socket.destroy();
        resolve(err);
      };
      socket.setTimeout(5_000, () => done());
      socket.once('error', done);
      socket.once('data', () => done());
      socket.once('end', () => done());
    });
  }

  override dispatch(opts: undici.Dispatcher.DispatchOptions, handler: undici.Dispatcher.DispatchHandler): boolean {
    return this.route(new URL(String(opts.origin))).dispatch(opts, handler);
  }

  override async close(): Promise<void> {
    await Promise.all([...this.routes.values()].map((d) => d.close()));
  }

  override async destroy(): Promise<void> {
    await Promise.all([...this.routes.values()].map((d) => d.destroy()));
  }
}

/** One Transport per distinct options, for the worker threads (every task carries its options). */
const shared = new Map<string, Transport>();
export function sharedTransport(options: TransportOptions): Transport {
  const key = JSON.stringify(options);
  let t = shared.get(key);
  if (!t) shared.set(key, (t = new Transport(options)));
  return t;
}
