// Registry mirrors, as docker's `registry-mirrors` (Docker Hub, --registry-mirror) and
// containers-registries.conf's [[registry.mirror]] (any registry): content is asked of each
// mirror in turn, then of the registry itself (or its registries.conf location) when a mirror is
// down, refuses, or lacks the content. Manifests fetched by digest are verified
// against the digest, so a mirror can never change what is saved; a tag is taken from the first
// endpoint that has it, as docker does.
import { findRegistry, rewrite, type RegistriesConf } from './registries-conf.js';
import { DOCKER_HUB } from '../ref/reference.js';
import { isLoopbackHost } from './hosts.js';
import { RegistryError } from './errors.js';
import type { FetchedManifest, RegistryClient } from './client.js';
import type { EngineEvents } from '../util/events.js';
import { UsageError } from '../util/errors.js';

/** `--registry-mirror` value → host[:port]. Accepts `host[:port]` and `https://host[:port][/]`. */
export function parseMirror(text: string, plainHttp = false): string {
  const raw = text.trim();
  const m = /^(?:(https?):\/\/)?([^/\s]+)\/?$/i.exec(raw);
  if (!m) throw new UsageError(`invalid --registry-mirror "${text}": expected HOST[:PORT] or https://HOST[:PORT]`);
  const host = m[2]!.toLowerCase();
  if (m[1]?.toLowerCase() === 'http' && !plainHttp && !isLoopbackHost(host)) {
    throw new UsageError(`--registry-mirror ${text}: plain HTTP to a non-loopback mirror needs --plain-http`);
  }
  return host;
}

type Health = Promise<boolean>;

/** Where content of a repository can be asked for: a mirror, or the origin (its registries.conf location). */
export interface Endpoint {
  registry: string;
  repository: string;
  mirror: boolean;
}

function endpointAt(name: string, mirror: boolean): Endpoint {
  const slash = name.indexOf('/');
  return { registry: name.slice(0, slash), repository: name.slice(slash + 1), mirror };
}

export interface MirrorConfig {
  /** --registry-mirror hosts, for docker.io only, tried before registries.conf's mirrors. */
  hubMirrors?: string[];
  registriesConf?: RegistriesConf;
}

export class Mirrors {
  private readonly health = new Map<string, Health>();
  /** Which endpoint served each manifest digest, keyed registry/repository@digest. */
  private readonly servedBy = new Map<string, Endpoint>();
  private readonly warned = new Set<string>();

  constructor(
    private readonly client: RegistryClient,
    private readonly config: MirrorConfig,
    private readonly events?: EngineEvents,
  ) {}

  /**
   * Endpoints for `registry/repository`, mirrors first, the origin last. A manifest `reference`
   * filters mirrors by their pull-from-mirror (digest-only, tag-only); blobs (no reference) may
   * come from any. A blocked prefix throws.
   */
  endpoints(registry: string, repository: string, reference?: string): Endpoint[] {
    const name = `${registry}/${repository}`;
    const conf = this.config.registriesConf;
    const entry = findRegistry(conf, name);
    if (entry?.blocked) throw new RegistryError('denied', `${name}: blocked by ${conf!.file} (prefix ${entry.prefix})`);
    const out: Endpoint[] = registry === DOCKER_HUB ? (this.config.hubMirrors ?? []).map((h) => ({ registry: h, repository, mirror: true })) : [];
    for (const m of entry?.mirrors ?? []) {
      const byDigest = reference?.startsWith('sha256:');
      if (reference !== undefined && ((m.pullFromMirror === 'digest-only' && !byDigest) || (m.pullFromMirror === 'tag-only' && byDigest))) continue;
      out.push(endpointAt(rewrite(entry!, name, m.location), true));
    }
    out.push(entry && entry.location !== entry.prefix ? endpointAt(rewrite(entry, name, entry.location), false) : { registry, repository, mirror: false });
    return out;
  }

  /** Mirror endpoints that answered their ping, in order. */
  private async liveMirrors(endpoints: Endpoint[]): Promise<Endpoint[]> {
    const mirrors = endpoints.filter((e) => e.mirror);
    const alive = await Promise.all(mirrors.map((e) => this.isUp(e.registry)));
    return mirrors.filter((_, i) => alive[i]);
  }

  /**
   * One GET /v2/ per mirror and run, without the client's retries: a mirror that is down must cost
   * one refused connection, not a backoff for every manifest. Any HTTP answer (401 included) is "up".
   */
  isUp(host: string): Health {
    let h = this.health.get(host);
    if (!h) {
      h = this.client.reachable(host).then((up) => {
        if (!up) this.warn(host, `registry mirror ${host} is unreachable; using the next mirror or the registry itself`);
        return up;
      });
      this.health.set(host, h);
    }
    return h;
  }

  /** The manifest from the first live mirror that has it, else from the origin. */
  async getManifest(registry: string, repository: string, reference: string): Promise<FetchedManifest> {
    const endpoints = this.endpoints(registry, repository, reference);
    const key = (digest: string) => `${registry}/${repository}@${digest}`;
    for (const e of await this.liveMirrors(endpoints)) {
      try {
        const m = await this.client.getManifest(e.registry, e.repository, reference);
        this.servedBy.set(key(m.digest), e);
        return m;
      } catch (err) {
        if (!(err instanceof RegistryError)) throw err;
        if (err.kind === 'unreachable') this.health.set(e.registry, Promise.resolve(false));
        // A mirror without the content is normal; anything else is worth a word.
        if (err.kind !== 'not-found') this.warn(e.registry, `registry mirror ${e.registry}: ${err.message}; falling back`);
      }
    }
    const origin = endpoints.at(-1)!;
    const m = await this.client.getManifest(origin.registry, origin.repository, reference);
    if (!this.servedBy.has(key(m.digest))) this.servedBy.set(key(m.digest), origin);
    return m;
  }

  /**
   * Where the blobs of an image rooted at `rootDigest` can come from, best first: the mirror that
   * served its manifest, then the origin. A root that came from the cache has no such record:
   * then every live mirror is worth a try (a 404 just moves on to the next source).
   */
  async blobSources(registry: string, repository: string, rootDigest: string): Promise<{ registry: string; repository: string }[]> {
    const endpoints = this.endpoints(registry, repository);
    const origin = endpoints.at(-1)!;
    const served = this.servedBy.get(`${registry}/${repository}@${rootDigest}`);
    let mirrors: Endpoint[];
    if (served === undefined) mirrors = await this.liveMirrors(endpoints);
    else mirrors = served.mirror ? [served] : [];
    return [...mirrors, origin].map((e) => ({ registry: e.registry, repository: e.repository }));
  }

  private warn(host: string, message: string): void {
    if (this.warned.has(host)) return;
    this.warned.add(host);
    this.events?.emit({ type: 'warning', message });
  }
}
