// The registry HTTP API client used on the main thread: auth (anonymous, basic, bearer tokens),
// manifests, tags, and the Authorization header handed to download workers.
import type { Dispatcher } from 'undici';
import { request } from './http.js';
import { clearTextAllowed, isLoopbackHost } from './hosts.js';
import { Transport, type TransportOptions } from './transport.js';
import type { HostOptionsMap } from './host-options.js';
import { errorCode, explainConnectError, isTlsRefusal } from './net-errors.js';
import { parseChallenge, type Challenge } from './challenge.js';
import { parseDistributionError, RegistryError, registryAnswerError } from './errors.js';
import { backoffMs, isRetryableError, isRetryableStatus, isTimeoutError, sleep, TIMEOUT_RETRIES, type RetryBudget } from './retry.js';
import { DEFAULT_NET_LIMITS, LowSpeedError, requestTimeouts, SpeedWatch, type NetLimits } from './timeouts.js';
import type { Credential } from './credentials.js';
import { MANIFEST_ACCEPT } from '../util/mediatypes.js';
import { manifestMediaType, ManifestFormatError } from '../ref/manifest.js';
import { sha256Bytes } from '../hash/hasher.js';
import { DOCKER_HUB, isTag } from '../ref/reference.js';
import { checkDigest, isDigest } from '../ref/digest.js';

export type CredentialLookup = (registry: string) => Promise<Credential | undefined>;

export interface ClientOptions {
  /** Talk plain HTTP to every registry, without trying HTTPS first. */
  plainHttp?: boolean;
  /** TLS per registry, proxies: how connections are made (also handed to the download workers). */
  transport?: TransportOptions;
  /** Per registry host[:port] TLS settings, over transport.hostOptions (skopeo-sync YAML). */
  hostOptions?: HostOptionsMap;
  credentials?: CredentialLookup;
  /** Connections per registry host. */
  connections?: number;
  userAgent?: string;
  /** Connect, header and low-speed limits, and retries per request (default DEFAULT_NET_LIMITS). */
  limits?: NetLimits;
  /** Time all requests together may spend failing (push's --retry-budget); unlimited without. */
  retryBudget?: RetryBudget;
  /** host[:port] that serves docker.io's registry API instead of DOCKER_HUB_API (a loopback stand-in for tests). */
  dockerHubApi?: string;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

/** A conditional manifest GET answered 304 Not Modified: the tag still names `digest`, the one sent. */
export interface UnchangedManifest {
  unchanged: true;
  digest: string;
}

interface Token {
  value: string;
  expiresAt: number;
}

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** The body of a 429 or 5xx is read and dropped up to this (undici's dump() limit), then the connection is. */
const MAX_DROPPED_BYTES = 128 * 1024;
/** Tags asked for per page of tags/list (`n`); distribution 2.8 honours it and links to the next page. */
export const TAGS_PAGE_SIZE = 1000;
/** Most tags read from one repository: a hostile registry cannot make the list (and memory) grow without end. */
export const MAX_TAGS = 100_000;
/** Most tags/list pages followed per repository (100,000 tags at the default page size, with room for registries whose pages are smaller). */
export const MAX_TAG_PAGES = 1_000;

export interface TagListOptions {
  pageSize?: number;
  maxTags?: number;
  maxPages?: number;
}
export const USER_AGENT = 'ocisave/0.1';

/** The host Docker Hub's registry API lives on (docker.io names the registry, not the API host). */
export const DOCKER_HUB_API = 'registry-1.docker.io';

/** Extra options of RegistryClient.api(): the token scope's actions and a request body. */
export interface ApiOptions {
  /** Token actions on the repository; default "pull". */
  actions?: string;
  /** Repositories that also need pull access (cross-repository mount sources). */
  alsoPull?: readonly string[];
  body?: string | Buffer;
  /** The most response bytes read; default MAX_MANIFEST_BYTES. */
  maxBytes?: number;
}

function tokenScope(repository: string, actions = 'pull', alsoPull: readonly string[] = []): string {
  return [`repository:${repository}:${actions}`, ...alsoPull.filter((r) => r !== repository).map((r) => `repository:${r}:pull`)].join(' ');
}

/** What the first GET /v2/ of a registry taught: the scheme it speaks and its auth challenge. */
interface Probe {
  scheme: 'http' | 'https';
  /** undefined: the registry could not be reached (not remembered: the next caller tries again). */
  challenge: Challenge | null | undefined;
}

/** The first GET /v2/ is a ping: bounded, not retried (a mirror that is down costs one refusal). */
const PROBE_TIMEOUT_MS = 10_000;

export class RegistryClient {
  readonly dispatcher: Dispatcher;
  readonly transport: Transport;
  private readonly schemes = new Map<string, 'http' | 'https'>();
  private readonly challenges = new Map<string, Challenge | null>();
  private readonly tokens = new Map<string, Promise<Token>>();
  private readonly credentialCache = new Map<string, Promise<Credential | undefined>>();
  private readonly pings = new Map<string, Promise<Probe>>();

  /** The transport options, also for the download workers (which keep undici's connection defaults). */
  readonly transportOptions: TransportOptions;
  readonly limits: NetLimits;
  readonly retryBudget: RetryBudget | undefined;

  constructor(private readonly opts: ClientOptions = {}) {
    this.limits = opts.limits ?? DEFAULT_NET_LIMITS;
    this.retryBudget = opts.retryBudget;
    this.transportOptions = {
      ...opts.transport,
      hostOptions: { ...opts.transport?.hostOptions, ...opts.hostOptions },
      connectTimeoutMs: this.limits.connectTimeoutMs,
    };
    this.transport = new Transport({ ...this.transportOptions, connections: opts.connections ?? 16 });
    this.dispatcher = this.transport;
  }

  /**
   * Credentials (Basic, or a token exchange carrying them) may cross the network in clear only to a
   * loopback host, or to a registry host the user asked plain HTTP for (--plain-http, push --to
   * http://), and that host's token realm on the same host name. Anything else is refused before a
   * connection is made: the user gave credentials expecting them to be protected, and going
   * anonymous instead would turn this into a confusing 401 later, or save what anonymous users see.
   */
  private guardClearText(registry: string, url: URL, what: string): void {
    if (clearTextAllowed(url, this.apiHost(registry), !!this.opts.plainHttp || this.insecure(this.apiHost(registry)))) return;
    const hint = url.hostname === new URL(`http://${this.apiHost(registry)}`).hostname ? 'pass --plain-http if this network is trusted' : 'the token server must use https://';
    throw new RegistryError(
      'insecure',
      `refusing to send the credentials for ${registry} in clear to ${url.host} (${what} ${url.origin}${url.pathname} is plain http://): ${hint}, or go without credentials`,
    );
  }

  /** The host the registry API of `registry` actually lives on. */
  private apiHost(registry: string): string {
    return registry === DOCKER_HUB ? (this.opts.dockerHubApi ?? DOCKER_HUB_API) : registry;
  }

  /** Whether the user asked for `host` to be spoken to insecurely (registries.conf insecure, --tls-verify=false for it). */
  private insecure(host: string): boolean {
    return this.transport.insecure(host);
  }

  /** `scheme://host` of the registry's API, once its first GET /v2/ has told which scheme it speaks. */
  async baseUrl(registry: string): Promise<string> {
    const known = this.schemes.get(registry);
    return known ? `${known}://${this.apiHost(registry)}` : `${(await this.probe(registry)).scheme}://${this.apiHost(registry)}`;
  }

  /** baseUrl() for a registry already spoken to (a guess from the rules before that). */
  knownBaseUrl(registry: string): string {
    return `${this.schemes.get(registry) ?? this.fallbackScheme(this.apiHost(registry))}://${this.apiHost(registry)}`;
  }

  /** Whether the registry answered its GET /v2/ (any HTTP status). */
  async reachable(registry: string): Promise<boolean> {
    return (await this.probe(registry)).challenge !== undefined;
  }

  /** Plain HTTP may be tried where docker would: loopback and insecure registries. */
  private mayUseHttp(host: string): boolean {
    return isLoopbackHost(host) || this.transport.insecure(host);
  }

  private fallbackScheme(host: string): 'http' | 'https' {
    return this.opts.plainHttp || this.mayUseHttp(host) ? 'http' : 'https';
  }

  private credential(registry: string): Promise<Credential | undefined> {
    let c = this.credentialCache.get(registry);
    if (!c) {
      c = this.opts.credentials ? this.opts.credentials(registry) : Promise.resolve(undefined);
      this.credentialCache.set(registry, c);
    }
    return c;
  }

  /**
   * The Authorization header value for `repository`, once the registry's challenge is known.
   * `actions` defaults to pull; push asks for "pull,push", and a cross-repository mount also
   * needs pull on the repositories in `alsoPull`.
   */
  async authorization(registry: string, repository: string, actions = 'pull', alsoPull: readonly string[] = []): Promise<string | undefined> {
    // A caller that never talked to this registry (blobs whose manifests came from the cache, a
    // mirror) would otherwise go anonymous, get 401s and fail: learn the challenge first.
    const challenge = this.challenges.has(registry) ? this.challenges.get(registry) : await this.discoverChallenge(registry);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') {
      const cred = await this.credential(registry);
      if (!cred || !('username' in cred)) return undefined;
      this.guardClearText(registry, new URL(await this.baseUrl(registry)), 'the registry');
      return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    }
    if (challenge.scheme === 'bearer') {
      // docker's `registrytoken`: a bearer token to send as is, no exchange.
      const cred = await this.credential(registry);
      if (cred && 'registryToken' in cred) {
        this.guardClearText(registry, new URL(await this.baseUrl(registry)), 'the registry');
        return `Bearer ${cred.registryToken}`;
      }
      const token = await this.token(registry, challenge, tokenScope(repository, actions, alsoPull));
      return `Bearer ${token}`;
    }
    return undefined;
  }

  /** GET /v2/ once per registry (docker's ping) to learn its auth challenge; undefined when it cannot be reached. */
  private async discoverChallenge(registry: string): Promise<Challenge | null | undefined> {
    const { challenge } = await this.probe(registry);
    if (challenge !== undefined && !this.challenges.has(registry)) this.challenges.set(registry, challenge);
    return this.challenges.get(registry);
  }

  /**
   * HTTPS first, loopback included; plain HTTP only for loopback and insecure registries, and only
   * when the HTTPS attempt failed for another reason than the certificate (docker's rule: a server
   * whose certificate we refuse does speak TLS, and its error is the one to report).
   */
  private probe(registry: string): Promise<Probe> {
    let p = this.pings.get(registry);
    if (!p) {
      const host = this.apiHost(registry);
      p = (async (): Promise<Probe> => {
        if (this.opts.plainHttp) return { scheme: 'http', challenge: await this.ping('http', host) };
        try {
          return { scheme: 'https', challenge: await this.ping('https', host) };
        } catch (err) {
          const cause = await this.tlsCause(err, new URL(`https://${host}`));
          if (!isTlsRefusal(cause) && this.mayUseHttp(host)) {
            // Only a registry's answer counts: a TLS server answers plain HTTP with 400.
            const challenge = await this.ping('http', host).catch(() => undefined);
            if (challenge !== undefined) return { scheme: 'http', challenge };
          }
          return { scheme: isTlsRefusal(cause) ? 'https' : this.fallbackScheme(host), challenge: undefined };
        }
      })().catch((): Probe => ({ scheme: this.fallbackScheme(host), challenge: undefined }));
      p.then((r) => {
        if (r.challenge === undefined) this.pings.delete(registry);
        else this.schemes.set(registry, r.scheme);
      });
      this.pings.set(registry, p);
    }
    return p;
  }

  /** A closed HTTPS connection may hide a TLS refusal (see Transport.diagnoseTls): the real cause when it does. */
  private async tlsCause(err: unknown, url: URL): Promise<unknown> {
    if (url.protocol !== 'https:' || isTlsRefusal(err) || !/UND_ERR_SOCKET|ECONNRESET|EPIPE/.test(errorCode(err))) return err;
    const real = await this.transport.diagnoseTls(url);
    return real && isTlsRefusal(real) ? real : err;
  }

  /** One GET /v2/ on `scheme`; the challenge (null: none needed or none understood), or a throw when unreachable. */
  private async ping(scheme: 'http' | 'https', host: string): Promise<Challenge | null> {
    const res = await request(`${scheme}://${host}/v2/`, {
      method: 'GET',
      dispatcher: this.dispatcher,
      headers: { 'user-agent': this.opts.userAgent ?? USER_AGENT },
      headersTimeout: Math.min(PROBE_TIMEOUT_MS, this.limits.headersTimeoutMs),
      bodyTimeout: PROBE_TIMEOUT_MS,
    });
    // A ping answered at 1 byte/s is dropped like any other body (undici's timer would not).
    const watch = new SpeedWatch(this.limits, (err) => res.body.destroy(err));
    try {
      await res.body.dump();
    } finally {
      watch.stop();
    }
    if (scheme === 'http' && res.statusCode === 400) throw new RegistryError('http', `${host} answered plain HTTP with 400 (a TLS port?)`, 400);
    const c = res.statusCode === 401 ? parseChallenge(res.headers['www-authenticate']) : undefined;
    return c && (c.scheme === 'bearer' || c.scheme === 'basic') ? c : null;
  }

  /** Forget the token for `repository` (after a 401 mid-download): the next authorization() fetches a new one. */
  invalidate(registry: string, repository: string, actions = 'pull', alsoPull: readonly string[] = []): void {
    this.tokens.delete(`${registry} ${tokenScope(repository, actions, alsoPull)}`);
  }

  private async token(registry: string, challenge: Challenge, scope: string): Promise<string> {
    const key = `${registry} ${scope}`;
    const cached = this.tokens.get(key);
    if (cached) {
      const t = await cached.catch(() => undefined);
      if (t && t.expiresAt > Date.now() + 5_000) return t.value;
    }
    const fresh = this.fetchToken(registry, challenge, scope);
    this.tokens.set(key, fresh);
    fresh.catch(() => this.tokens.delete(key));
    return (await fresh).value;
  }

  private async fetchToken(registry: string, challenge: Challenge, scope: string): Promise<Token> {
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryError('bad-response', `${registry} asked for a bearer token without a realm`);
    const cred = await this.credential(registry);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new RegistryError('bad-response', `${registry} named a token realm that is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryError('bad-response', `${registry} named a token realm that is not http(s)`);
    if (cred && !('registryToken' in cred)) this.guardClearText(registry, url, 'its token realm');
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent ?? USER_AGENT };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    if (cred && 'identityToken' in cred) {
      // An identity token is an OAuth2 refresh token (docker's `identitytoken`).
      method = 'POST';
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'ocisave', scope });
      if (challenge.params.service) form.set('service', challenge.params.service);
      body = form.toString();
    } else {
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
      // Several scopes (a mount's source repository) go as repeated parameters, as docker sends them.
      for (const one of scope.split(' ')) url.searchParams.append('scope', one);
      if (cred && 'username' in cred) headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    }
    const res = await this.send(url.toString(), { method, headers, body }, `token for ${registry}`);
    if (res.status === 401 || res.status === 403) {
      throw new RegistryError('unauthorized', `authentication to ${registry} failed: the token server ${url.host} rejected ${cred ? 'the credentials' : 'anonymous access'}${cred ? '' : ' (log in, or pass --username/--password-stdin)'}`, res.status);
    }
    if (res.status !== 200) throw new RegistryError('http', `token server ${url.host} for ${registry} answered HTTP ${res.status}`, res.status);
    let json: { token?: string; access_token?: string; expires_in?: number };
    try {
      json = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new RegistryError('bad-response', `token server ${url.host} for ${registry} answered something that is not JSON`);
    }
    const value = json.token ?? json.access_token;
    if (!value) throw new RegistryError('bad-response', `token server ${url.host} for ${registry} answered without a token`);
    return { value, expiresAt: Date.now() + (json.expires_in && json.expires_in > 0 ? json.expires_in : 60) * 1000 };
  }

  /**
   * One HTTP exchange with retries on resets, timeouts, 5xx and 429 (--retries, and the retry
   * budget when there is one); the body is read up to `maxBytes`, under the low-speed rule.
   */
  private async send(
    url: string,
    init: { method: Dispatcher.HttpMethod; headers: Record<string, string>; body?: string | Buffer },
    what: string,
    maxBytes = MAX_MANIFEST_BYTES,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    let timeouts = 0;
    for (let attempt = 1; ; attempt++) {
      const started = Date.now();
      let res: Awaited<ReturnType<RegistryClient['exchange']>>;
      try {
        res = await this.exchange(url, init, what, maxBytes);
      } catch (caught) {
        if (caught instanceof RegistryError) throw caught;
        const err = await this.tlsCause(caught, new URL(url));
        const wait = backoffMs(attempt);
        // A registry that let two full timeouts pass is not answering: a silent one fails after
        // 2 × --header-timeout (plus the ping's), not after 6 (it took 190 s before the flags).
        const givenUp = isTimeoutError(err) && ++timeouts > TIMEOUT_RETRIES;
        if (!givenUp && isRetryableError(err) && this.mayRetry(attempt, Date.now() - started + wait)) {
          await sleep(wait);
          continue;
        }
        const u = new URL(url);
        const explained = explainConnectError(err, u.host, this.transport.proxyOf(u));
        if (explained) throw new RegistryError('unreachable', `${what}: ${explained}`);
        const code = err instanceof LowSpeedError ? err.message : errorCode(err);
        const budget = this.retryBudget?.exhausted ? `; ${this.retryBudget.describe()}` : '';
        const timedOut = err instanceof LowSpeedError || isTimeoutError(err);
        throw new RegistryError('unreachable', `cannot reach ${u.host} (${what}): ${code} after ${attempt} attempt${attempt === 1 ? '' : 's'}${budget}`, undefined, timedOut ? 'TIMEOUT' : undefined);
      }
      if (!isRetryableStatus(res.status)) return res;
      const wait = backoffMs(attempt, res.headers['retry-after']);
      // Out of retries: the caller reports the status.
      if (!this.mayRetry(attempt, Date.now() - started + wait)) return res;
      await sleep(wait);
    }
  }

  /** Whether attempt `attempt` may be followed by another, charging `spentMs` to the retry budget. */
  private mayRetry(attempt: number, spentMs: number): boolean {
    if (attempt > this.limits.retries) return false;
    return this.retryBudget ? this.retryBudget.charge(spentMs) : true;
  }

  /**
   * One request; the body read whole, at most `maxBytes`, dropped when slower than the low-speed
   * rule. Taken from undici's dispatch callbacks, not a Readable: every tag check, manifest and
   * small blob comes through here on the main thread, and the stream and its async iterator cost
   * ~30-110 µs of CPU a request of the ~450 µs each one costs in all (bench/README.md, round 4).
   */
  private exchange(
    url: string,
    init: { method: Dispatcher.HttpMethod; headers: Record<string, string>; body?: string | Buffer },
    what: string,
    maxBytes: number,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const { origin, pathname, search } = new URL(url);
    return new Promise((resolve, reject) => {
      let status = 0;
      // A status that is retried: its body is dropped, and past MAX_DROPPED_BYTES (an endless
      // error page) so is the connection; the answer stands.
      let retried = false;
      let headers: Record<string, string | string[] | undefined> = {};
      const chunks: Buffer[] = [];
      let total = 0;
      let watch: SpeedWatch | undefined;
      this.dispatcher.dispatch(
        { origin, path: pathname + search, ...init, ...requestTimeouts(this.limits) },
        {
          onRequestStart() {},
          onResponseStart: (controller, statusCode, resHeaders) => {
            status = statusCode;
            retried = isRetryableStatus(statusCode);
            headers = resHeaders as typeof headers;
            watch = new SpeedWatch(this.limits, (err) => controller.abort(err));
          },
          onResponseData: (controller, chunk) => {
            if (controller.aborted) return;
            watch?.add(chunk.length);
            total += chunk.length;
            if (retried) {
              if (total <= MAX_DROPPED_BYTES) return;
              watch?.stop();
              resolve({ status, headers, body: Buffer.alloc(0) });
              controller.abort(new RegistryError('bad-response', `${what}: error body larger than ${MAX_DROPPED_BYTES} bytes`));
            } else if (total > maxBytes) controller.abort(new RegistryError('bad-response', `${what}: response larger than ${maxBytes} bytes`, undefined, 'LIMIT'));
            else chunks.push(chunk);
          },
          onResponseEnd: () => {
            watch?.stop();
            resolve({ status, headers, body: Buffer.concat(chunks) });
          },
          onResponseError: (_controller, err) => {
            watch?.stop();
            reject(err);
          },
        },
      );
    });
  }

  /** An authenticated request against the registry API for `repository`, following the auth challenge once. */
  async api(
    registry: string,
    repository: string,
    method: Dispatcher.HttpMethod,
    path: string,
    headers: Record<string, string> = {},
    what = `${registry}/${repository}`,
    opts: ApiOptions = {},
  ) {
    const probe = await this.probe(registry);
    const url = `${this.schemes.get(registry) ?? probe.scheme}://${this.apiHost(registry)}${path}`;
    // A registry whose ping failed gets this request anonymous, without a second ping: the request
    // reports what is wrong (with its retries), and a 401 answer teaches the challenge.
    const pinged = probe.challenge !== undefined || this.challenges.has(registry);
    for (let authTry = 0; ; authTry++) {
      const h: Record<string, string> = { 'user-agent': this.opts.userAgent ?? USER_AGENT, ...headers };
      const auth = pinged || authTry > 0 ? await this.authorization(registry, repository, opts.actions, opts.alsoPull) : undefined;
      if (auth) h.authorization = auth;
      const res = await this.send(url, { method, headers: h, body: opts.body }, what, opts.maxBytes);
      if (res.status === 401 && authTry === 0) {
        const challenge = parseChallenge(res.headers['www-authenticate']);
        if (challenge && (challenge.scheme === 'bearer' || challenge.scheme === 'basic')) {
          this.challenges.set(registry, challenge);
          this.invalidate(registry, repository, opts.actions, opts.alsoPull);
          continue;
        }
      }
      if (res.status === 401) {
        const cred = await this.credential(registry);
        throw registryAnswerError(
          'unauthorized',
          `authentication to ${registry} failed for ${repository}: ${cred ? 'the registry rejected the credentials' : 'no credentials found (docker login, or --username/--password-stdin)'}`,
          401,
          res.body,
        );
      }
      return res;
    }
  }

  /**
   * A manifest by tag or digest, its bytes hashed and checked against the digest asked for and the
   * Docker-Content-Digest header. With `known` (the digest whose bytes the caller holds for this
   * tag), the GET is conditional: `If-None-Match: "<known>"`, quoted as the Etag docker-registry
   * sends. A 304 answers UnchangedManifest, trusted only as "the tag still names `known`": the
   * caller takes its own bytes for that digest. A registry that ignores the header answers 200,
   * handled as without it. Unlike HEAD, after which undici closes the connection (client-h1.js
   * resets the socket after every HEAD), a 304 keeps it: 247 tags cost 248 connections by HEAD.
   */
  async getManifest(registry: string, repository: string, reference: string): Promise<FetchedManifest>;
  async getManifest(registry: string, repository: string, reference: string, known: string): Promise<FetchedManifest | UnchangedManifest>;
  async getManifest(registry: string, repository: string, reference: string, known?: string): Promise<FetchedManifest | UnchangedManifest> {
    const name = `${registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const headers: Record<string, string> = { accept: MANIFEST_ACCEPT };
    if (known !== undefined) headers['if-none-match'] = `"${checkDigest(known, `${name}: the digest held for it`)}"`;
    const res = await this.api(registry, repository, 'GET', `/v2/${repository}/manifests/${reference}`, headers, name);
    if (res.status === 304 && known !== undefined) return unchangedManifest(res.headers['docker-content-digest'], known, name);
    if (res.status === 404) {
      throw registryAnswerError('not-found', `${name}: not found (${reference.startsWith('sha256:') ? 'no such manifest' : 'no such tag or repository'})`, 404, res.body);
    }
    if (res.status === 403) throw registryAnswerError('denied', `${name}: access denied by the registry`, 403, res.body);
    if (res.status !== 200) throw registryAnswerError('http', `${name}: registry answered HTTP ${res.status}`, res.status, res.body);
    const bytes = res.body;
    const digest = sha256Bytes(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new RegistryError('digest-mismatch', `${name}: the registry sent a manifest whose digest is ${digest}`);
    }
    const header = res.headers['docker-content-digest'];
    if (typeof header === 'string' && header.startsWith('sha256:') && header !== digest) {
      throw new RegistryError('digest-mismatch', `${name}: Docker-Content-Digest ${header} does not match the bytes (${digest})`);
    }
    const mediaType = manifestTypeOf(bytes, res.headers['content-type'], name);
    return { digest, mediaType, bytes };
  }

  /**
   * The digest a tag points at, from a HEAD request's Docker-Content-Digest header: no body, no
   * hashing, so a warm save asks each Docker Hub tag without a GET, which Hub's pull rate limit
   * would count (elsewhere the conditional GET of getManifest costs fewer connections). Undefined for any
   * answer that does not name a valid sha256 digest with 200 (no header, 404, 405, a proxy that
   * mangles HEAD): the caller then GETs the manifest, whose answer says what is wrong. The digest
   * is trusted only to pick bytes from a content-addressed cache, which checks them against it.
   */
  async headManifestDigest(registry: string, repository: string, tag: string): Promise<string | undefined> {
    const name = `${registry}/${repository}:${tag}`;
    let res;
    try {
      res = await this.api(registry, repository, 'HEAD', `/v2/${repository}/manifests/${tag}`, { accept: MANIFEST_ACCEPT }, name);
    } catch (err) {
      // Refused credentials and a registry that does not answer (after the retries) fail the GET
      // the same way: said once, now, not after as many retries again.
      if (err instanceof RegistryError && (err.kind === 'unauthorized' || err.kind === 'unreachable')) throw err;
      return undefined;
    }
    const header = res.headers['docker-content-digest'];
    return res.status === 200 && isDigest(header) ? header : undefined;
  }

  /**
   * A small blob, whole, in memory: the bytes when the registry answers 200 with no more than
   * `size` of them, undefined for any other answer (a redirect, an error), which the caller leaves
   * to the download pool. The digest is the caller's to check.
   */
  async getSmallBlob(registry: string, repository: string, digest: string, size: number): Promise<Buffer | undefined> {
    const res = await this.api(registry, repository, 'GET', `/v2/${repository}/blobs/${digest}`, {}, `${registry}/${repository}@${digest}`, { maxBytes: size });
    return res.status === 200 ? res.body : undefined;
  }

  /** Every tag of a repository; see listTagPages. An absent repository has none. */
  async listTags(registry: string, repository: string, opts: TagListOptions = {}): Promise<string[]> {
    return (await this.listTagPages(registry, repository, opts)).tags;
  }

  /**
   * Tags through `GET /v2/NAME/tags/list?n=N`, following the `Link: <…>; rel="next"` header page by
   * page (distribution spec "Listing Tags"). A registry is not trusted to end the list: at most
   * `maxTags` tags and `maxPages` pages are read, a Link must stay on the same host and endpoint,
   * a page that adds no new tag ends with an error (a loop), and every tag must be a valid tag.
   */
  async listTagPages(registry: string, repository: string, opts: TagListOptions = {}): Promise<{ tags: string[]; pages: number }> {
    const { pageSize = TAGS_PAGE_SIZE, maxTags = MAX_TAGS, maxPages = MAX_TAG_PAGES } = opts;
    const name = `${registry}/${repository}`;
    const endpoint = `/v2/${repository}/tags/list`;
    const tags: string[] = [];
    const seen = new Set<string>();
    let path = `${endpoint}?n=${pageSize}`;
    for (let page = 1; ; page++) {
      const res = await this.api(registry, repository, 'GET', path, {}, `${name} (tags list)`);
      // distribution answers NAME_UNKNOWN for a repository it does not know (skopeo list-tags fails
      // on it too); a 404 without that code is a repository with no tags.
      if (res.status === 404 && page === 1 && parseDistributionError(res.body).code === 'NAME_UNKNOWN') {
        throw registryAnswerError('not-found', `${name}: no such repository (listing tags)`, 404, res.body);
      }
      if (res.status === 404 && page === 1) return { tags: [], pages: 1 };
      if (res.status === 403) throw registryAnswerError('denied', `${name}: listing tags denied by the registry`, 403, res.body);
      if (res.status !== 200) throw registryAnswerError('http', `${name}: tags list answered HTTP ${res.status}`, res.status, res.body);
      const before = tags.length;
      for (const tag of tagsOfPage(res.body, name)) {
        if (seen.has(tag)) continue;
        seen.add(tag);
        tags.push(tag);
      }
      if (tags.length > maxTags) throw new RegistryError('bad-response', `${name}: more than ${maxTags} tags; refusing to list more (the cap on tags read per repository)`, undefined, 'LIMIT');
      const next = nextPagePath(res.headers.link, await this.baseUrl(registry), endpoint, name);
      if (!next) return { tags, pages: page };
      if (tags.length === before) throw new RegistryError('bad-response', `${name}: tags list page ${page} added no new tag but links to another page (a loop)`);
      if (page >= maxPages) throw new RegistryError('bad-response', `${name}: tags list longer than ${maxPages} pages; refusing to read more (the cap on pages read per repository)`, undefined, 'LIMIT');
      path = next;
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** The `tags` of one tags/list page, each checked against the tag grammar. */
function tagsOfPage(body: Buffer, name: string): string[] {
  let json: { tags?: unknown };
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new RegistryError('bad-response', `${name}: tags list is not valid JSON`);
  }
  const tags = json?.tags ?? [];
  if (!Array.isArray(tags)) throw new RegistryError('bad-response', `${name}: tags list has no tags array`);
  for (const tag of tags) {
    if (typeof tag !== 'string' || !isTag(tag)) throw new RegistryError('bad-response', `${name}: tags list holds an invalid tag ${JSON.stringify(String(tag).slice(0, 140))}`);
  }
  return tags as string[];
}

/**
 * The path and query of the `rel="next"` page in a Link header, or undefined at the last page.
 * The link may be relative or absolute, but must name the same origin and tags/list endpoint:
 * anything else would send our credentials, or our loop, somewhere else.
 */
export function nextPagePath(header: string | string[] | undefined, base: string, endpoint: string, name: string): string | undefined {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  for (const value of values) {
    for (const part of value.split(/,(?=\s*<)/)) {
      const m = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
      if (!m || !/(^|;)\s*rel\s*=\s*"?next"?\s*(;|$)/i.test(m[2]!)) continue;
      let url: URL;
      try {
        url = new URL(m[1]!, base);
      } catch {
        throw new RegistryError('bad-response', `${name}: tags list Link header is not a URL`);
      }
      if (url.origin !== new URL(base).origin || url.pathname !== endpoint) {
        throw new RegistryError('bad-response', `${name}: tags list Link points away from ${endpoint} on this registry`);
      }
      return `${url.pathname}${url.search}`;
    }
  }
  return undefined;
}

/**
 * The answer to a 304: docker-registry 2.8 sends no Docker-Content-Digest with it, but one that
 * names another digest than the one sent contradicts the 304, and neither can be trusted.
 */
function unchangedManifest(header: string | string[] | undefined, known: string, name: string): UnchangedManifest {
  if (header !== undefined && header !== known) {
    throw new RegistryError('bad-response', `${name}: the registry answered 304 Not Modified to If-None-Match ${known} with Docker-Content-Digest ${String(header).slice(0, 80)}`);
  }
  return { unchanged: true, digest: known };
}

/** The manifest's own mediaType field wins over Content-Type (some registries send text/plain). */
function manifestTypeOf(bytes: Buffer, contentType: string | string[] | undefined, name: string): string {
  try {
    return manifestMediaType(bytes, Array.isArray(contentType) ? contentType[0] : contentType, name);
  } catch (err) {
    if (!(err instanceof ManifestFormatError)) throw err;
    if (err.reason === 'schema1') throw new RegistryError('unsupported', err.message);
    throw new RegistryError('bad-response', `${name}: manifest is not valid JSON`);
  }
}
