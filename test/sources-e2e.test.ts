// Issue 13 end to end, against the real docker-registry: a sealer build context, tag sets over a
// repository of 262 tags, a skopeo sync YAML run by skopeo sync and by ocisave, the registry
// layout's name collision and --scoped, and a one-platform OCI layout umoci unpacks.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import http from 'node:http';
import type net from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { run, skopeo, skopeoInspectRaw, umociUnpack } from './support/exec.js';
import { layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { buildLayer, mapLimit, MT, pushImage, pushIndex, pushManifest, sha256, type PushedManifest } from './fixtures/index.js';
import { RegistryClient } from '../src/registry/client.js';

let source: RunningRegistry;
let other: RunningRegistry;
let work: string;
const layouts = layoutServers();
const pushed = new Map<string, PushedManifest>();

/** A one-layer OCI image whose content is its own name, so every image has its own digest. */
async function image(reg: RunningRegistry, repo: string, tag: string, platform = { os: 'linux', architecture: 'amd64' }): Promise<PushedManifest> {
  const layer = await buildLayer([{ type: 'file', path: 'name.txt', content: `${reg.host}/${repo}:${tag} ${platform.architecture}\n` }]);
  const m = await pushImage(reg.url, repo, tag, { format: 'oci', layers: [layer], platform });
  pushed.set(`${reg.host}/${repo}:${tag}`, m);
  return m;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-sources-e2e-'));
  [source, other] = await Promise.all([startRegistry(), startRegistry()]);
});

afterAll(async () => {
  await Promise.all([source?.stop(), other?.stop(), layouts.stopAll()]);
  await rm(work, { recursive: true, force: true });
});

async function write(root: string, tree: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(tree)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

/** Digest the served registry answers for a reference (skopeo inspect --raw, hashed). */
async function servedDigest(ref: string): Promise<string> {
  return sha256(await skopeoInspectRaw(ref));
}

describe('sealer build context', () => {
  const host = () => source.host;
  const expected = () => [
    `${host()}/app/api:3.1`,
    `${host()}/app/web:1.0`,
    `${host()}/cache/redis:7.2`,
    `${host()}/library/alpine:3.19`,
    `${host()}/tools/extra:1.0`,
    `${host()}/tools/job:2.0`,
  ];
  let ctx: string;

  beforeAll(async () => {
    const h = host();
    await Promise.all(['app/api:3.1', 'app/web:1.0', 'cache/redis:7.2', 'library/alpine:3.19', 'tools/extra:1.0', 'tools/job:2.0', 'cluster/kubernetes:v1.19.8', 'not/copied:1'].map((r) => image(source, r.split(':')[0]!, r.split(':')[1]!)));
    ctx = join(work, 'ctx');
    await write(ctx, {
      Kubefile: [
        '# a cluster image with an app (issue 13 fixture)',
        'ARG REGISTRY=registry.invalid',
        'ARG K8S_VERSION=v1.19.8',
        'FROM ${REGISTRY}/cluster/kubernetes:${K8S_VERSION}',
        'ARG APPS=apps',
        'COPY ${APPS}/*.yaml \\',
        '     $APPS/sub/**/*.yml manifests',
        'COPY imageList manifests',
        'COPY charts/webapp charts',
        'COPY notes.txt etc/',
        'COPY https://example.invalid/extra.yaml manifests',
        'RUN echo building',
        'CMD ["kubectl apply -f manifests"]',
        '',
      ].join('\n'),
      'apps/deploy.yaml': [
        'apiVersion: apps/v1',
        'kind: Deployment',
        'metadata: {name: web}',
        'spec:',
        '  template:',
        '    spec:',
        '      initContainers:',
        `      - {name: init, image: "${h}/library/alpine:3.19"}`,
        '      containers:',
        `      - {name: web, image: ${h}/app/web:1.0}`,
        '',
      ].join('\n'),
      'apps/settings.yaml': 'replicas: 3\n',
      'apps/skipped.json': `{"image": "${h}/not/copied:1"}\n`,
      'apps/sub/deep/job.yml': `apiVersion: batch/v1\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - image: ${h}/tools/job:2.0\n`,
      imageList: `# extra images\n\n${h}/tools/extra:1.0   # pulled by an operator\n  ${h}/library/alpine:3.19\n`,
      'charts/webapp/Chart.yaml': 'apiVersion: v2\nname: webapp\nversion: 0.1.0\nappVersion: "3.1"\ndependencies:\n- name: redis\n  version: 0.2.0\n',
      'charts/webapp/values.yaml': `image:\n  registry: ${h}\n  repository: app/api\n  pullPolicy: IfNotPresent\n`,
      'charts/webapp/templates/deployment.yaml': 'spec:\n  containers:\n  - image: "{{ .Values.image.registry }}/{{ .Values.image.repository }}"\n',
      'charts/webapp/charts/redis/Chart.yaml': 'apiVersion: v2\nname: redis\nversion: 0.2.0\n',
      'charts/webapp/charts/redis/values.yaml': `image:\n  registry: ${h}\n  repository: cache/redis\n  tag: "7.2"\n`,
      'manifests/not-copied.yaml': `apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: ${h}/not/copied:1\n`,
      'notes.txt': `${h}/not/copied:1\n`,
    });
  });

  it('list-images prints exactly the images the context would build in, and names what it does not follow', async () => {
    const r = await ocisave(['list-images', ctx, '--build-arg', `REGISTRY=${host()}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual(expected());
    expect(r.stderr).toContain('Kubefile:11: COPY from https://example.invalid/extra.yaml not followed');
    expect(r.stderr).toContain('Kubefile:12: RUN not followed');
    expect(r.stderr).toContain('Kubefile:13: CMD not followed');

    const withBase = await ocisave(['list-images', join(ctx, 'Kubefile'), '--build-arg', `REGISTRY=${host()}`, '--include-base']);
    expect(withBase.code, withBase.stderr).toBe(0);
    expect(withBase.stdout.trim().split('\n').sort()).toEqual([...expected(), `${host()}/cluster/kubernetes:v1.19.8`].sort());
  });

  it('save -f CONTEXT writes a layout a second registry serves every reference from', async () => {
    const bundle = join(work, 'ctx-bundle');
    const r = await ocisave(['save', '-f', ctx, '--build-arg', `REGISTRY=${host()}`, '--include-base', '-o', bundle, '--cache', join(work, 'cache'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(7);
    const reg = await layouts.serve(bundle);
    for (const ref of [...expected(), `${host()}/cluster/kubernetes:v1.19.8`]) {
      expect(await servedDigest(ref.replace(host(), reg.host)), ref).toBe(pushed.get(ref)!.digest);
    }
    const absent = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--no-creds', `docker://${reg.host}/not/copied:1`]);
    expect(absent.code).not.toBe(0);
  });
});

describe('tag sets over 262 tags', () => {
  const repo = 'many/tags';
  const versions: string[] = [];
  for (let minor = 0; minor < 13; minor++) for (let patch = 0; patch < 20; patch++) versions.push(`v1.${minor}.${patch}`);
  const all = [...versions, 'latest', 'nightly-2024'];
  let digest: string;

  beforeAll(async () => {
    const first = await image(source, repo, 'latest');
    digest = first.digest;
    // One manifest, many tags: a PUT of the same bytes per tag.
    await mapLimit(all.slice(0, -2).concat('nightly-2024'), 16, (tag) => pushManifest(source.url, repo, tag, first.bytes, first.mediaType));
  });

  // docker-registry 2.8.2 ignores n and last on tags/list (checked: ?n=2 answers every tag, no Link).
  // Registries that paginate (distribution 3, Docker Hub) answer sorted pages with a Link to the next:
  // this front does that over the real registry's own list.
  async function paginatingFront(link: 'next' | 'same' | 'offsite'): Promise<{ host: string; close(): Promise<void> }> {
    const server = http.createServer((req, res) => {
      void (async () => {
        const u = new URL(req.url ?? '/', 'http://front');
        if (u.pathname === '/v2/') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        if (!u.pathname.endsWith('/tags/list')) return void res.writeHead(404).end();
        const upstream = await request(`${source.url}${u.pathname}`);
        const all = (JSON.parse(await upstream.body.text()).tags as string[]).sort();
        const n = Number(u.searchParams.get('n') ?? all.length);
        const last = u.searchParams.get('last');
        const start = last === null ? 0 : all.findIndex((t) => t > last);
        const page = start < 0 ? [] : all.slice(start, start + n);
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (start >= 0 && start + n < all.length) {
          const next = `${u.pathname}?last=${encodeURIComponent(page[page.length - 1]!)}&n=${n}`;
          headers.link = link === 'next' ? `<${next}>; rel="next"` : link === 'same' ? `<${u.pathname}${u.search}>; rel="next"` : `<http://elsewhere.invalid${next}>; rel="next"`;
        }
        res.writeHead(200, headers).end(JSON.stringify({ name: repo, tags: page }));
      })();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  it('the client follows Link pagination with n page by page, within its caps', async () => {
    const client = new RegistryClient();
    const fronts = await Promise.all([paginatingFront('next'), paginatingFront('same'), paginatingFront('offsite')]);
    const [paging, looping, offsite] = fronts;
    try {
      const paged = await client.listTagPages(paging!.host, repo, { pageSize: 100 });
      expect(paged.pages).toBe(3);
      expect(paged.tags).toEqual([...all].sort());
      const capped = await client.listTagPages(paging!.host, repo, { pageSize: 100, maxTags: 150 }).catch((e: Error) => e);
      expect(String(capped)).toMatch(/more than 150 tags; refusing to list more/);
      const short = await client.listTagPages(paging!.host, repo, { pageSize: 100, maxPages: 2 }).catch((e: Error) => e);
      expect(String(short)).toMatch(/longer than 2 pages/);
      const loop = await client.listTagPages(looping!.host, repo, { pageSize: 100 }).catch((e: Error) => e);
      expect(String(loop)).toMatch(/page 2 added no new tag but links to another page/);
      const away = await client.listTagPages(offsite!.host, repo, { pageSize: 100 }).catch((e: Error) => e);
      expect(String(away)).toMatch(/Link points away/);
      // The real registry, asked for pages of 1000, answers all 262 at once.
      const whole = await client.listTagPages(source.host, repo);
      expect(whole.pages).toBe(1);
      expect([...whole.tags].sort()).toEqual([...all].sort());
    } finally {
      await client.close();
      await Promise.all(fronts.map((f) => f.close()));
    }
  });

  async function resolvedTags(args: string[]): Promise<string[]> {
    const r = await ocisave(['resolve', `${source.host}/${repo}`, ...args, '--cache', join(work, 'cache'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    for (const row of report.images) expect(row.digest).toBe(digest);
    return report.images.map((row: { tag: string }) => row.tag).sort();
  }

  it('--all-tags, --tag-regex, --tag-semver and --newest select the expected sets', async () => {
    expect(await resolvedTags(['--all-tags'])).toEqual([...all].sort());
    expect(await resolvedTags(['--tag-regex', '^v1\\.12\\.1'])).toEqual(['v1.12.1', 'v1.12.10', 'v1.12.11', 'v1.12.12', 'v1.12.13', 'v1.12.14', 'v1.12.15', 'v1.12.16', 'v1.12.17', 'v1.12.18', 'v1.12.19']);
    expect(await resolvedTags(['--tag-semver', '>=1.11.17 <1.12.2'])).toEqual(['v1.11.17', 'v1.11.18', 'v1.11.19', 'v1.12.0', 'v1.12.1']);
    expect(await resolvedTags(['--newest', '3'])).toEqual(['v1.12.17', 'v1.12.18', 'v1.12.19']);
    expect(await resolvedTags(['--tag-regex', '^v1\\.3\\.', '--newest', '2'])).toEqual(['v1.3.18', 'v1.3.19']);
  });

  it('a bad rule is a usage error before any registry is asked', async () => {
    const r = await ocisave(['resolve', `${source.host}/${repo}`, '--tag-semver', 'one point two']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid semver range "one point two"/);
  });
});

describe('skopeo sync YAML', () => {
  let yaml: string;
  let pinned: string;

  beforeAll(async () => {
    await Promise.all([image(source, 'synca', '1.0'), image(source, 'synca', '3.0'), image(source, 'syncb', 'x'), image(source, 'syncb', 'y'), image(source, 'syncc', 'v2.1'), image(source, 'syncc', 'v2.2'), image(source, 'syncc', 'v3.0')]);
    pinned = (await image(source, 'synca', '2.0')).digest;
    yaml = join(work, 'sync.yaml');
    await writeFile(
      yaml,
      [
        `${source.host}:`,
        '  tls-verify: false',
        '  images:',
        '    synca:',
        '      - "1.0"',
        `      - "${pinned}"`,
        '    syncb: []',
        '  images-by-tag-regex:',
        '    syncc: ^v2\\.',
        '',
      ].join('\n'),
    );
  });

  /** repo:tag → digest of every tag in a registry, through its catalog and tags lists. */
  async function contents(reg: RunningRegistry): Promise<Record<string, string>> {
    const catalog = JSON.parse(await (await request(`${reg.url}/v2/_catalog`)).body.text()).repositories as string[];
    const out: Record<string, string> = {};
    for (const repo of catalog) {
      const tags = (JSON.parse(await (await request(`${reg.url}/v2/${repo}/tags/list`)).body.text()).tags ?? []) as string[];
      for (const tag of tags) {
        const res = await request(`${reg.url}/v2/${repo}/manifests/${tag}`, { method: 'HEAD', headers: { accept: `${MT.ociManifest}, ${MT.ociIndex}` } });
        await res.body.dump();
        out[`${repo}:${tag}`] = String(res.headers['docker-content-digest']);
      }
    }
    return out;
  }

  // skopeo sync --dest docker keeps only the last path component of a repository (registry/repo/busybox →
  // DEST/busybox) where ocisave's layout keeps the whole path: one-component names compare the two.
  it('skopeo sync and ocisave save the same references and digests from the same file', async () => {
    const dest = await startRegistry();
    try {
      const synced = await skopeo(['sync', '--src', 'yaml', '--dest', 'docker', '--dest-tls-verify=false', yaml, dest.host], { timeoutMs: 300_000 });
      expect(synced.code, synced.stderr).toBe(0);
      const bundle = join(work, 'sync-bundle');
      const r = await ocisave(['save', '-f', yaml, '-o', bundle, '--cache', join(work, 'cache'), '--json']);
      expect(r.code, r.stderr).toBe(0);
      const served = await layouts.serve(bundle);
      const bySkopeo = await contents(dest);
      const byOcisave = await contents(served);
      const want: Record<string, string> = {};
      for (const ref of ['synca:1.0', 'syncb:x', 'syncb:y', 'syncc:v2.1', 'syncc:v2.2']) want[ref] = pushed.get(`${source.host}/${ref}`)!.digest;
      expect(bySkopeo).toEqual(want);
      expect(byOcisave).toEqual(want);
      // The digest-pinned entry is there by digest in both, untagged.
      for (const reg of [dest, served]) expect(await servedDigest(`${reg.host}/synca@${pinned}`)).toBe(pinned);
    } finally {
      await dest.stop();
    }
  });

  it('images-by-semver selects by version range (skopeo 1.9.3 here predates that key)', async () => {
    const f = join(work, 'semver.yaml');
    await writeFile(f, `${source.host}:\n  images-by-semver:\n    syncc: ">= 2.2.0"\n    synca: "~1"\n`);
    const r = await ocisave(['list-images', f]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual([`${source.host}/synca:1.0`, `${source.host}/syncc:v2.2`, `${source.host}/syncc:v3.0`]);
  });
});

describe('sync YAML credentials', () => {
  it('are used for their registry only, and never printed', async () => {
    const password = 'pw-in-sync-yaml-7f3a';
    const [locked, other] = await Promise.all([startRegistry({ htpasswd: { username: 'syncer', password } }), startRegistry({ htpasswd: { username: 'syncer', password } })]);
    try {
      const layer = await buildLayer([{ type: 'file', path: 'name.txt', content: 'locked\n' }]);
      const m = await pushImage({ url: locked.url, username: 'syncer', password }, 'private/app', '1.0', { format: 'oci', layers: [layer] });
      await pushImage({ url: other.url, username: 'syncer', password }, 'private/app', '1.0', { format: 'oci', layers: [layer] });
      // No credentials anywhere but in the YAML.
      const env = { REGISTRY_AUTH_FILE: join(work, 'no-auth.json'), DOCKER_CONFIG: join(work, 'no-docker') };
      await writeFile(env.REGISTRY_AUTH_FILE, '{}');
      const f = join(work, 'creds.yaml');
      const creds = (pw: string) => `  credentials:\n    username: syncer\n    password: ${pw}\n`;
      await writeFile(f, `${locked.host}:\n  images:\n    private/app: ["1.0"]\n${creds(password)}${other.host}:\n  images:\n    private/app: ["1.0"]\n`);
      const r = await ocisave(['resolve', '-f', f, '--cache', join(work, 'cache'), '--json'], { env });
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout);
      expect(report.images.map((i: { input: string; digest: string }) => [i.input, i.digest])).toEqual([[`${locked.host}/private/app:1.0`, m.digest]]);
      expect(r.stderr).toContain(`authentication to ${other.host} failed for private/app: no credentials found`);
      expect(r.stdout + r.stderr).not.toContain(password);

      await writeFile(f, `${locked.host}:\n  images:\n    private/app: ["1.0"]\n${creds(`wrong-${password}`)}`);
      const bad = await ocisave(['resolve', '-f', f, '--cache', join(work, 'cache')], { env });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`authentication to ${locked.host} failed for private/app: the registry rejected the credentials`);
      expect(bad.stdout + bad.stderr).not.toContain(password);
    } finally {
      await Promise.all([locked.stop(), other.stop()]);
    }
  });
});

describe('registry layout names', () => {
  let a: PushedManifest;
  let b: PushedManifest;
  beforeAll(async () => {
    [a, b] = await Promise.all([image(source, 'dup/x', '1.0'), image(other, 'dup/x', '1.0')]);
  });

  it('the same repo:tag from two registries is an error naming both, and nothing is written', async () => {
    const bundle = join(work, 'dup');
    const r = await ocisave(['save', `${source.host}/dup/x:1.0`, `${other.host}/dup/x:1.0`, '-o', bundle, '--cache', join(work, 'cache')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${source.host}/dup/x:1.0 and ${other.host}/dup/x:1.0 would both be saved as dup/x:1.0 in the registry layout`);
    expect(existsSync(bundle)).toBe(false);
  });

  it('--scoped keeps each source host in the path, and docker-registry serves both', async () => {
    const bundle = join(work, 'scoped');
    const r = await ocisave(['save', `${source.host}/dup/x:1.0`, `${other.host}/dup/x:1.0`, '--scoped', '-o', bundle, '--cache', join(work, 'cache')]);
    expect(r.code, r.stderr).toBe(0);
    const reg = await layouts.serve(bundle);
    const scoped = (host: string) => host.replace(':', '_');
    expect(await servedDigest(`${reg.host}/${scoped(source.host)}/dup/x:1.0`)).toBe(a.digest);
    expect(await servedDigest(`${reg.host}/${scoped(other.host)}/dup/x:1.0`)).toBe(b.digest);
    expect(a.digest).not.toBe(b.digest);
  });
});

describe('one-platform OCI layouts', () => {
  const name = () => `${source.host}/multi/app:1.0`;
  let amd: PushedManifest;
  let arm: PushedManifest;
  let index: PushedManifest;
  beforeAll(async () => {
    amd = await image(source, 'multi/app', 'amd64-only', { os: 'linux', architecture: 'amd64' });
    arm = await image(source, 'multi/app', 'arm64-only', { os: 'linux', architecture: 'arm64', variant: 'v8' } as { os: string; architecture: string });
    index = await pushIndex(source.url, 'multi/app', '1.0', 'oci', [amd.descriptor, arm.descriptor]);
  });

  it("names the platform's manifest, which umoci unpacks and skopeo reads by name", async () => {
    const out = join(work, 'oci-one');
    const r = await ocisave(['save', name(), '--format', 'oci', '--platform', 'linux/arm64', '-o', out, '--cache', join(work, 'cache')]);
    expect(r.code, r.stderr).toBe(0);
    const idx = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(idx.manifests).toHaveLength(1);
    expect(idx.manifests[0]).toMatchObject({ mediaType: MT.ociManifest, digest: arm.digest });
    expect(await servedDigest(`oci:${out}:${name()}`)).toBe(arm.digest);
    const unpacked = join(work, 'umoci-bundle');
    await umociUnpack(out, name(), unpacked);
    expect(await readFile(join(unpacked, 'rootfs', 'name.txt'), 'utf8')).toBe(`${source.host}/multi/app:arm64-only arm64\n`);
  });

  it('--keep-index names the index as before, only the selected platform inside', async () => {
    const out = join(work, 'oci-index');
    const r = await ocisave(['save', name(), '--format', 'oci', '--platform', 'linux/arm64', '--keep-index', '-o', out, '--cache', join(work, 'cache')]);
    expect(r.code, r.stderr).toBe(0);
    const idx = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(idx.manifests).toHaveLength(1);
    expect(idx.manifests[0]).toMatchObject({ mediaType: MT.ociIndex, digest: index.digest });
    expect(existsSync(join(out, 'blobs', 'sha256', arm.digest.slice(7)))).toBe(true);
    expect(existsSync(join(out, 'blobs', 'sha256', amd.digest.slice(7)))).toBe(false);
  });
});
