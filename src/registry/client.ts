// The registry HTTP API client used on the main thread: auth (anonymous, basic, bearer tokens),
// manifests, tags, and the Authorization header handed to download workers.
import type { Dispatcher } from 'undici';
import { Agent, request } from './http.js';
import { clearTextAllowed, isLoopbackHost } from './hosts.js';
import { parseChallenge, type Challenge } from './challenge.js';
import { RegistryError } from './errors.js';
import { backoffMs, isRetryableError, isRetryableStatus, isTimeoutError, sleep, TIMEOUT_RETRIES, type RetryBudget } from './retry.js';
import { agentTimeouts, DEFAULT_NET_LIMITS, LowSpeedError, requestTimeouts, SpeedWatch, type NetLimits } from './timeouts.js';
import type { Credential } from './credentials.js';
import { MANIFEST_ACCEPT, MT } from '../resolve/mediatypes.js';
import { sha256Bytes } from '../hash/hasher.js';
import { DOCKER_HUB_API_ENV } from './mirror.js';

export type CredentialLookup = (registry: string) => Promise<Credential | undefined>;

export interface ClientOptions {
  /** Talk plain HTTP to every registry (loopback hosts always get plain HTTP). */
  plainHttp?: boolean;
  credentials?: CredentialLookup;
  /** Connections per registry host. */
  connections?: number;
  userAgent?: string;
  /** Connect, header and low-speed limits, and retries per request (default DEFAULT_NET_LIMITS). */
  limits?: NetLimits;
  /** Time all requests together may spend failing (push's --retry-budget); unlimited without. */
  retryBudget?: RetryBudget;
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

interface Token {
  value: string;
  expiresAt: number;
}

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const USER_AGENT = 'ocisave/0.1';

/** Hosts the registry API actually lives on. */
export function apiHost(registry: string): string {
  // OCISAVE_DOCKERHUB_API (tests only, see mirror.ts) stands a loopback registry in for Docker Hub.
  return registry === 'docker.io' ? process.env[DOCKER_HUB_API_ENV] || 'registry-1.docker.io' : registry;
}

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

export class RegistryClient {
  readonly dispatcher: Dispatcher;
  private readonly challenges = new Map<string, Challenge | null>();
  private readonly tokens = new Map<string, Promise<Token>>();
  private readonly credentialCache = new Map<string, Promise<Credential | undefined>>();
  private readonly pings = new Map<string, Promise<Challenge | null | undefined>>();
  readonly limits: NetLimits;
  readonly retryBudget: RetryBudget | undefined;

  constructor(private readonly opts: ClientOptions = {}) {
    this.limits = opts.limits ?? DEFAULT_NET_LIMITS;
    this.retryBudget = opts.retryBudget;
    this.dispatcher = new Agent({ connections: opts.connections ?? 16, pipelining: 1, keepAliveTimeout: 30_000, ...agentTimeouts(this.limits) });
  }

  /**
   * Credentials (Basic, or a token exchange carrying them) may cross the network in clear only to a
   * loopback host, or to a registry host the user asked plain HTTP for (--plain-http, push --to
   * http://), and that host's token realm on the same host name. Anything else is refused before a
   * connection is made: the user gave credentials expecting them to be protected, and going
   * anonymous instead would turn this into a confusing 401 later, or save what anonymous users see.
   */
  private guardClearText(registry: string, url: URL, what: string): void {
    if (clearTextAllowed(url, apiHost(registry), !!this.opts.plainHttp)) return;
    const hint = url.hostname === new URL(`http://${apiHost(registry)}`).hostname ? 'pass --plain-http if this network is trusted' : 'the token server must use https://';
    throw new RegistryError(
      'insecure',
      `refusing to send the credentials for ${registry} in clear to ${url.host} (${what} ${url.origin}${url.pathname} is plain http://): ${hint}, or go without credentials`,
    );
  }

  baseUrl(registry: string): string {
    const host = apiHost(registry);
    const scheme = this.opts.plainHttp || isLoopbackHost(host) ? 'http' : 'https';
    return `${scheme}://${host}`;
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
      this.guardClearText(registry, new URL(this.baseUrl(registry)), 'the registry');
      return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    }
    if (challenge.scheme === 'bearer') {
      // docker's `registrytoken`: a bearer token to send as is, no exchange.
      const cred = await this.credential(registry);
      if (cred && 'registryToken' in cred) {
        this.guardClearText(registry, new URL(this.baseUrl(registry)), 'the registry');
        return `Bearer ${cred.registryToken}`;
      }
      const token = await this.token(registry, challenge, tokenScope(repository, actions, alsoPull));
      return `Bearer ${token}`;
    }
    return undefined;
  }

  /** GET /v2/ once per registry (docker's ping) to learn its auth challenge; undefined when it cannot be reached. */
  private discoverChallenge(registry: string): Promise<Challenge | null | undefined> {
    let p = this.pings.get(registry);
    if (!p) {
      p = request(`${this.baseUrl(registry)}/v2/`, {
        method: 'GET',
        dispatcher: this.dispatcher,
        headers: { 'user-agent': this.opts.userAgent ?? USER_AGENT },
        ...requestTimeouts(this.limits),
      })
        .then(async (res) => {
          // A ping answered at 1 byte/s is dropped like any other body (undici's timer would not).
          const watch = new SpeedWatch(this.limits, (err) => res.body.destroy(err));
          try {
            await res.body.dump();
          } finally {
            watch.stop();
          }
          const c = res.statusCode === 401 ? parseChallenge(res.headers['www-authenticate']) : undefined;
          if (!this.challenges.has(registry)) this.challenges.set(registry, c && (c.scheme === 'bearer' || c.scheme === 'basic') ? c : null);
          return this.challenges.get(registry);
        })
        .catch(() => {
          // Unreachable: let the real request report it (with its retries).
          this.pings.delete(registry);
          return undefined;
        });
      this.pings.set(registry, p);
    }
    return p;
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
      } catch (err) {
        if (err instanceof RegistryError) throw err;
        const wait = backoffMs(attempt);
        // A registry that let two full timeouts pass is not answering: a silent one fails after
        // 2 × --header-timeout (plus the ping's), not after 6 (it took 190 s before the flags).
        const givenUp = isTimeoutError(err) && ++timeouts > TIMEOUT_RETRIES;
        if (!givenUp && isRetryableError(err) && this.mayRetry(attempt, Date.now() - started + wait)) {
          await sleep(wait);
          continue;
        }
        const code = err instanceof LowSpeedError ? err.message : ((err as { code?: string }).code ?? (err as Error).message);
        const budget = this.retryBudget?.exhausted ? `; ${this.retryBudget.describe()}` : '';
        throw new RegistryError('unreachable', `cannot reach ${new URL(url).host} (${what}): ${code} after ${attempt} attempt${attempt === 1 ? '' : 's'}${budget}`);
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

  /** One request; the body read whole, at most `maxBytes`, dropped when slower than the low-speed rule. */
  private async exchange(
    url: string,
    init: { method: Dispatcher.HttpMethod; headers: Record<string, string>; body?: string | Buffer },
    what: string,
    maxBytes: number,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
    const res = await request(url, { ...init, dispatcher: this.dispatcher, ...requestTimeouts(this.limits) });
    const watch = new SpeedWatch(this.limits, (err) => res.body.destroy(err));
    try {
      if (isRetryableStatus(res.statusCode)) {
        await res.body.dump();
        return { status: res.statusCode, headers: res.headers, body: Buffer.alloc(0) };
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of res.body) {
        total += chunk.length;
        watch.add(chunk.length);
        if (total > maxBytes) {
          res.body.destroy();
          throw new RegistryError('bad-response', `${what}: response larger than ${maxBytes} bytes`);
        }
        chunks.push(chunk);
      }
      return { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) };
    } finally {
      watch.stop();
    }
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
    const url = `${this.baseUrl(registry)}${path}`;
    for (let authTry = 0; ; authTry++) {
      const h: Record<string, string> = { 'user-agent': this.opts.userAgent ?? USER_AGENT, ...headers };
      const auth = await this.authorization(registry, repository, opts.actions, opts.alsoPull);
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
        throw new RegistryError(
          'unauthorized',
          `authentication to ${registry} failed for ${repository}: ${cred ? 'the registry rejected the credentials' : 'no credentials found (docker login, or --username/--password-stdin)'}`,
          401,
        );
      }
      return res;
    }
  }

  async getManifest(registry: string, repository: string, reference: string): Promise<FetchedManifest> {
    const name = `${registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const res = await this.api(registry, repository, 'GET', `/v2/${repository}/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, name);
    if (res.status === 404) {
      throw new RegistryError('not-found', `${name}: not found (${reference.startsWith('sha256:') ? 'no such manifest' : 'no such tag or repository'})`, 404);
    }
    if (res.status === 403) throw new RegistryError('denied', `${name}: access denied by the registry`, 403);
    if (res.status !== 200) throw new RegistryError('http', `${name}: registry answered HTTP ${res.status}`, res.status);
    const bytes = res.body;
    const digest = sha256Bytes(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new RegistryError('digest-mismatch', `${name}: the registry sent a manifest whose digest is ${digest}`);
    }
    const header = res.headers['docker-content-digest'];
    if (typeof header === 'string' && header.startsWith('sha256:') && header !== digest) {
      throw new RegistryError('digest-mismatch', `${name}: Docker-Content-Digest ${header} does not match the bytes (${digest})`);
    }
    const mediaType = manifestMediaType(bytes, res.headers['content-type'], name);
    return { digest, mediaType, bytes };
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

  async listTags(registry: string, repository: string): Promise<string[]> {
    const res = await this.api(registry, repository, 'GET', `/v2/${repository}/tags/list?n=10000`);
    if (res.status === 404) return [];
    if (res.status !== 200) throw new RegistryError('http', `${registry}/${repository}: tags list answered HTTP ${res.status}`, res.status);
    return (JSON.parse(res.body.toString('utf8')).tags ?? []) as string[];
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}

/** The manifest's own mediaType field wins over Content-Type (some registries send text/plain). */
function manifestMediaType(bytes: Buffer, contentType: string | string[] | undefined, name: string): string {
  let parsed: { mediaType?: string; schemaVersion?: number; manifests?: unknown; layers?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new RegistryError('bad-response', `${name}: manifest is not valid JSON`);
  }
  const ct = (Array.isArray(contentType) ? contentType[0] : contentType)?.split(';')[0]?.trim();
  if (parsed.schemaVersion === 1 || ct === MT.dockerSchema1 || ct === MT.dockerSchema1Signed) {
    throw new RegistryError('unsupported', `${name}: docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current client`);
  }
  if (parsed.mediaType) return parsed.mediaType;
  if (ct && ct !== 'application/json' && ct !== 'text/plain') return ct;
  // OCI allows omitting mediaType: tell index from manifest by shape.
  return parsed.manifests ? MT.ociIndex : MT.ociManifest;
}
