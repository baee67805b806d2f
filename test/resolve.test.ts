// Issue 5: `ocisave resolve` (the dry run), lock files that make a later save reproducible after a
// tag moved, and `ocisave list-images`.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { skopeoInspectRaw } from './support/exec.js';
import { layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { pushManifest, seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const sha = sha256;

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
const layouts = layoutServers();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-resolve-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { skipBig: true });
});

afterAll(async () => {
  await Promise.all([source?.stop(), layouts.stopAll()]);
  await rm(work, { recursive: true, force: true });
});

const serve = layouts.serve;

const refOf = (repoTag: string) => fx.references.find((r) => r.endsWith(`/${repoTag}`))!;

/** Point `repo:tag` at the manifest `digest` (pushed earlier) by PUTting its exact bytes. */
async function tag(repo: string, tagName: string, digest: string): Promise<void> {
  const m = fx.manifests[digest]!;
  await pushManifest(source.url, repo, tagName, m.json, m.mediaType);
}

describe('ocisave resolve', () => {
  it('prints each reference with its digest, platforms, size and what the cache lacks; downloads nothing', async () => {
    const cache = join(work, 'cache-dry');
    const refs = [refOf('library/alpine:3.19'), refOf('app/web:1.0'), refOf('charts/mysql:8.8.19')];
    const r = await ocisave(['resolve', ...refs, '--cache', cache, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.images.map((i: { input: string }) => i.input)).toEqual(refs);
    for (const row of report.images) {
      const want = fx.refs[row.input]!;
      expect(row.digest).toBe(want.digest);
      expect(row.reference).toBe(`${fx.registry}/${want.repository}@${want.digest}`);
      expect(row.tag).toBe(want.tag);
      expect(row.bytes).toBe(want.blobBytes);
      expect(row.missingBytes).toBe(want.blobBytes);
      expect(row.platforms).toEqual(want.children.length ? want.children.map((c) => c.platform) : ['any']);
    }
    const unique = new Set(refs.flatMap((ref) => fx.refs[ref]!.blobs));
    const uniqueBytes = [...unique].reduce((n, d) => n + fx.blobs[d]!.size, 0);
    expect(report.total).toMatchObject({ images: 3, blobs: unique.size, bytes: uniqueBytes, missingBlobs: unique.size, missingBytes: uniqueBytes });

    // Text form: one "input → registry/repo@digest" line per reference, then the totals.
    const text = await ocisave(['resolve', refs[1]!, '--cache', cache, '--platform', 'linux/arm64']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`${refs[1]} → ${fx.registry}/app/web@${fx.refs[refs[1]!]!.digest}`);
    expect(text.stdout).toContain('linux/arm64/v8;');
    expect(text.stdout).not.toContain('linux/amd64');
    expect(text.stdout).toMatch(/to download: \d+ blobs/);

    // After a save into the same cache, nothing is missing any more.
    const s = await ocisave(['save', ...refs, '-o', join(work, 'dry-bundle'), '--cache', cache, '--json']);
    expect(s.code, s.stderr).toBe(0);
    const again = JSON.parse((await ocisave(['resolve', ...refs, '--cache', cache, '--json'])).stdout);
    expect(again.total.missingBytes).toBe(0);
    expect(again.images.every((i: { missingBytes: number }) => i.missingBytes === 0)).toBe(true);
  });

  it('reports a reference that does not resolve, exits 1 and writes no lock file', async () => {
    const lock = join(work, 'never.lock.json');
    const bad = `${fx.registry}/app/web:nope`;
    const r = await ocisave(['resolve', refOf('app/web:1.0'), bad, '--cache', join(work, 'cache-bad'), '--lock', lock]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${refOf('app/web:1.0')} → `);
    expect(r.stderr).toContain(`${bad}: not found`);
    expect(r.stderr).toContain('not written');
    await expect(readFile(lock)).rejects.toThrow();
  });

  it('a lock file pins the digests: a save from it gets them after the tag moved', async () => {
    const v10 = fx.refs[refOf('app/web:1.0')]!;
    const v11 = fx.refs[refOf('app/web:1.1')]!;
    await tag('app/web', 'moving', v10.digest);
    const moving = `${fx.registry}/app/web:moving`;
    const lock = join(work, 'images.lock.json');
    const r = await ocisave(['resolve', moving, refOf('library/alpine:3.19'), '--lock', lock, '--cache', join(work, 'cache-lock-resolve'), '--platform', 'linux/amd64']);
    expect(r.code, r.stderr).toBe(0);
    const written = JSON.parse(await readFile(lock, 'utf8'));
    expect(written.platforms).toBe('linux/amd64');
    expect(written.images[0]).toMatchObject({ input: moving, reference: `${fx.registry}/app/web@${v10.digest}`, tag: 'moving' });

    // The tag moves on (another image pushed to it).
    await tag('app/web', 'moving', v11.digest);

    for (const [name, args] of [
      ['with --lock', ['--lock', lock]],
      ['with -f', ['-f', lock]],
    ] as const) {
      const bundle = join(work, `locked-${name.replace(/\W/g, '')}`);
      const s = await ocisave(['save', ...args, '-o', bundle, '--cache', join(work, 'cache-lock-save'), '--json']);
      expect(s.code, s.stderr).toBe(0);
      expect(summaryOf(s).images).toBe(2);
      const reg = await serve(bundle);
      // Served under the same tag, with the locked content (and the lock's platform only).
      expect(sha(await skopeoInspectRaw(`${reg.host}/app/web:moving`)), name).toBe(v10.digest);
      const amd64 = v10.children.find((c) => c.platform === 'linux/amd64')!;
      const arm64 = v10.children.find((c) => c.platform === 'linux/arm64/v8')!;
      expect(sha(await skopeoInspectRaw(`${reg.host}/app/web@${amd64.digest}`))).toBe(amd64.digest);
      await expect(skopeoInspectRaw(`${reg.host}/app/web@${arm64.digest}`), name).rejects.toThrow();
    }

    // Without the lock the same reference is the new content.
    const fresh = await ocisave(['save', moving, '-o', join(work, 'unlocked'), '--cache', join(work, 'cache-lock-save')]);
    expect(fresh.code, fresh.stderr).toBe(0);
    const reg = await serve(join(work, 'unlocked'));
    expect(sha(await skopeoInspectRaw(`${reg.host}/app/web:moving`))).toBe(v11.digest);
  });

  it('save --lock refuses a file that is not a lock file', async () => {
    const list = join(work, 'not-a-lock');
    await writeFile(list, `${refOf('app/web:1.0')}\n`);
    const r = await ocisave(['save', '--lock', list, '-o', join(work, 'no')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${list} is not an ocisave lock file`);
  });
});

describe('ocisave list-images', () => {
  it('prints normalised references from image lists, Kubernetes YAML and charts; --json adds sources', async () => {
    const dir = join(work, 'inputs');
    await mkdir(join(dir, 'chart', 'templates'), { recursive: true });
    await writeFile(join(dir, 'imageList'), '# base images\nubuntu\nnginx:1.25   # web\nquay.io/org/app@sha256:' + 'a'.repeat(64) + '\nnginx:1.25\n');
    await writeFile(
      join(dir, 'deploy.yaml'),
      `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: i, image: "busybox:1.36"}]
  containers: [{name: c, image: "nginx:1.25"}, {name: d, image: "localhost:5000/team/svc:2"}]
`,
    );
    await writeFile(join(dir, 'chart', 'Chart.yaml'), 'apiVersion: v2\nname: demo\nversion: 0.1.0\n');
    await writeFile(join(dir, 'chart', 'values.yaml'), 'image:\n  repository: bitnami/redis\n  tag: "7.2"\n');
    await writeFile(
      join(dir, 'chart', 'templates', 'deploy.yaml'),
      'apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: r\n          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"\n',
    );

    const r = await ocisave(['list-images', join(dir, 'imageList'), join(dir, 'deploy.yaml'), join(dir, 'chart')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      'docker.io/library/ubuntu:latest',
      'docker.io/library/nginx:1.25',
      `quay.io/org/app@sha256:${'a'.repeat(64)}`,
      'localhost:5000/team/svc:2',
      'docker.io/library/busybox:1.36',
      'docker.io/bitnami/redis:7.2',
    ]);

    const j = await ocisave(['list-images', join(dir, 'imageList'), join(dir, 'deploy.yaml'), '--json']);
    expect(j.code, j.stderr).toBe(0);
    const nginx = JSON.parse(j.stdout).images.find((i: { reference: string }) => i.reference === 'docker.io/library/nginx:1.25');
    expect(nginx.sources.map((s: { source: string }) => s.source)).toEqual([`${join(dir, 'imageList')}:3`, expect.stringContaining('deploy.yaml')]);
    expect(nginx.sources[0].input).toBe('nginx:1.25');
  });

  it('names the source of a bad reference, exits 1 and still lists the good ones', async () => {
    const list = join(work, 'bad-list');
    await writeFile(list, 'alpine:3.19\nNot/Valid:x\n');
    const r = await ocisave(['list-images', list]);
    expect(r.code).toBe(1);
    expect(r.stdout.trim()).toBe('docker.io/library/alpine:3.19');
    expect(r.stderr).toContain(`${list}:2: invalid reference "Not/Valid:x"`);
  });

  it('lists what a lock file pins', async () => {
    const lock = join(work, 'list.lock.json');
    const ref = refOf('app/web:1.1');
    const r = await ocisave(['resolve', ref, '--lock', lock, '--cache', join(work, 'cache-list-lock')]);
    expect(r.code, r.stderr).toBe(0);
    const l = await ocisave(['list-images', lock]);
    expect(l.stdout.trim()).toBe(`${ref}@${fx.refs[ref]!.digest}`);
  });
});
