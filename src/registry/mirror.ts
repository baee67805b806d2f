// Registry mirrors for Docker Hub, as docker's `registry-mirrors`: docker.io content is asked of
// each mirror in turn (same API paths, /v2/library/NAME/...), then of Docker Hub itself when a
// mirror is down, refuses, or lacks the content. Manifests fetched by digest are verified
// against the digest, so a mirror can never change what is saved; a tag is taken from the first
// endpoint that has it, as docker does.
import { request } from './http.js';
import { DOCKER_HUB } from '../ref/reference.js';
import { isLoopbackHost } from './hosts.js';
import { RegistryError } from './errors.js';
import type { FetchedManifest, RegistryClient } from './client.js';
import type { EngineEvents } from '../engine/events.js';

/**
 * Test hook, deliberately not in --help: the host:port that stands in for Docker Hub's API host
 * (registry-1.docker.io), so tests can play "origin" with a loopback registry. Read by apiHost().
 */
export const DOCKER_HUB_API_ENV = 'OCISAVE_DOCKERHUB_API';

const PING_TIMEOUT_MS = 5_000;

/** `--registry-mirror` value → host[:port]. Accepts `host[:port]` and `https://host[:port][/]`. */
export function parseMirror(text: string, plainHttp = false): string {
  const raw = text.trim();
  const m = /^(?:(https?):\/\/)?([^/\s]+)\/?$/i.exec(raw);
  if (!m) throw new Error(`invalid --registry-mirror "${text}": expected HOST[:PORT] or https://HOST[:PORT]`);
  const host = m[2]!.toLowerCase();
  if (m[1]?.toLowerCase() === 'http' && !plainHttp && !isLoopbackHost(host)) {
    throw new Error(`--registry-mirror ${text}: plain HTTP to a non-loopback mirror needs --plain-http`);
  }
  return host;
}

type Health = Promise<boolean>;

export class Mirrors {
  private readonly health = new Map<string, Health>();
  /** Which endpoint served each manifest digest (mirror host, or the registry itself). */
  private readonly servedBy = new Map<string, string>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly client: RegistryClient,
    /** Mirror hosts, in the order to try them. */
    readonly hosts: string[],
    private readonly events?: EngineEvents,
  ) {}

  /** Mirrors apply to Docker Hub only (docker's rule: other registries are named explicitly). */
  mirrorsOf(registry: string): string[] {
    return registry === DOCKER_HUB ? this.hosts : [];
  }

  /** Mirrors of `registry` that answered their ping, in order. */
  async liveMirrors(registry: string): Promise<string[]> {
    const hosts = this.mirrorsOf(registry);
    const alive = await Promise.all(hosts.map((h) => this.isUp(h)));
    return hosts.filter((_, i) => alive[i]);
  }

  /**
   * One GET /v2/ per mirror and run, without the client's retries: a mirror that is down must cost
   * one refused connection, not a backoff for every manifest. Any HTTP answer (401 included) is "up".
   */
  isUp(host: string): Health {
    let h = this.health.get(host);
    if (!h) {
      h = request(`${this.client.baseUrl(host)}/v2/`, { method: 'GET', dispatcher: this.client.dispatcher, headersTimeout: PING_TIMEOUT_MS, bodyTimeout: PING_TIMEOUT_MS })
        .then(async (res) => {
          await res.body.dump();
          return true;
        })
        .catch((err: unknown) => {
          const code = (err as { code?: string }).code ?? (err as Error).message;
          this.warn(host, `registry mirror ${host} is unreachable (${code}); using ${DOCKER_HUB} directly`);
          return false;
        });
      this.health.set(host, h);
    }
    return h;
  }

  /** The manifest from the first live mirror that has it, else from the registry itself. */
  async getManifest(registry: string, repository: string, reference: string): Promise<FetchedManifest> {
    for (const host of await this.liveMirrors(registry)) {
      try {
        const m = await this.client.getManifest(host, repository, reference);
        this.servedBy.set(`${repository}@${m.digest}`, host);
        return m;
      } catch (err) {
        if (!(err instanceof RegistryError)) throw err;
        if (err.kind === 'unreachable') this.health.set(host, Promise.resolve(false));
        // A mirror without the content is normal; anything else is worth a word.
        if (err.kind !== 'not-found') this.warn(host, `registry mirror ${host}: ${err.message}; falling back`);
      }
    }
    const m = await this.client.getManifest(registry, repository, reference);
    if (!this.servedBy.has(`${repository}@${m.digest}`)) this.servedBy.set(`${repository}@${m.digest}`, registry);
    return m;
  }

  /**
   * Where the blobs of an image rooted at `rootDigest` can come from, best first: the mirror that
   * served its manifest, then the registry. A root that came from the cache has no such record:
   * then every live mirror is worth a try (a 404 just moves on to the next source).
   */
  async blobSources(registry: string, repository: string, rootDigest: string): Promise<{ registry: string; repository: string }[]> {
    const mirrors = this.mirrorsOf(registry);
    if (mirrors.length === 0) return [{ registry, repository }];
    const served = this.servedBy.get(`${repository}@${rootDigest}`);
    let hosts: string[];
    if (served === undefined) hosts = await this.liveMirrors(registry);
    else hosts = mirrors.includes(served) ? [served] : [];
    return [...hosts, registry].map((r) => ({ registry: r, repository }));
  }

  private warn(host: string, message: string): void {
    if (this.warned.has(host)) return;
    this.warned.add(host);
    this.events?.emit({ type: 'warning', message });
  }
}
