// `ocisave convert`, offline, between every bundle format, each output read by its real consumer:
// registry layout → docker tar loaded by podman; docker tars (ocisave's, and podman's legacy one)
// → OCI layout read by skopeo; skopeo's OCI layout → registry layout served by docker-registry and
// pulled by skopeo. Digests are compared with what the fixture generator pushed. The source
// registry is stopped before the first convert: every bundle is read from disk alone.
import { existsSync } from 'node:fs';
import { cp, mkdtemp, open, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { podman, skopeo, skopeoCopy, skopeoInspectRaw } from './support/exec.js';
import { layoutServers, startRegistry } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';
import { save } from '../src/engine/pipeline.js';
import { sha } from './link-graph.js';

vi.setConfig({ testTimeout: 300_000, hookTimeout: 300_000 });

let fx: FixtureSet;
let work: string;
let layout: string; // registry layout saved from the registry, every platform
let skopeoOci: string; // OCI layout written by skopeo copy --all
const servers = layoutServers();
const REFS = ['app/web:1.0', 'library/alpine:3.19', 'nested/deep/repo/tool:v2', 'test/whiteouts:latest'];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-convert-'));
  const source = await startRegistry();
  try {
    fx = await seedStandardFixtures(source.url, { skipBig: true });
    layout = join(work, 'layout');
    await save(
      REFS.map((r) => `${fx.registry}/${r}`),
      { format: 'registry', out: layout, platforms: 'all', cacheDir: join(work, 'cache'), plainHttp: true },
    );
    skopeoOci = join(work, 'skopeo-oci');
    await skopeoCopy(`${fx.registry}/app/web:1.0`, `oci:${skopeoOci}:web`, ['--all']);
  } finally {
    await source.stop();
  }
});
afterAll(async () => {
  await servers.stopAll();
  if (work) await rm(work, { recursive: true, force: true });
});

const fixture = (r: string) => fx.refs[`${fx.registry}/${r}`]!;
const amd64Of = (r: string) => fixture(r).children.find((c) => c.platform === 'linux/amd64')!;

/** Nothing but OUT itself beside OUT: no staging directory left behind. */
async function besideOut(dir: string, out: string): Promise<string[]> {
  const base = out.slice(dir.length + 1);
  return (await readdir(dir)).filter((n) => n.includes(base) && n !== base);
}

describe('ocisave convert', () => {
  it('registry layout → docker tar: podman loads every image, IDs are the source config digests', async () => {
    const out = join(work, 'conv', 'images.tar');
    const r = await ocisave(['convert', layout, '-o', out, '--format', 'docker', '--platform', 'linux/amd64', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images.sort()).toEqual(REFS.map((x) => `localhost/${x}`).sort());
    const root = join(work, 'podman');
    await podman(root, ['load', '-i', out]);
    const images = JSON.parse((await podman(root, ['images', '--format', 'json'])).stdout) as Array<{ Id: string; Names?: string[] }>;
    expect(images).toHaveLength(4);
    expect(images.find((i) => i.Id === amd64Of('app/web:1.0').config.slice(7))?.Names).toContain('localhost/app/web:1.0');
    expect(images.find((i) => i.Id === amd64Of('library/alpine:3.19').config.slice(7))?.Names).toContain('localhost/library/alpine:3.19');
    expect(images.find((i) => i.Id === fixture('nested/deep/repo/tool:v2').config!.slice(7))?.Names).toContain('localhost/nested/deep/repo/tool:v2');
    const info = JSON.parse((await skopeo(['inspect', `docker-archive:${out}:localhost/test/whiteouts:latest`])).stdout) as { Layers: string[] };
    expect(info.Layers).toHaveLength(fixture('test/whiteouts:latest').layers!.length);
    expect(await besideOut(join(work, 'conv'), out)).toEqual([]);
  });

  it('docker tar → OCI layout: skopeo reads each name, manifests keep the source digests', async () => {
    const tar = join(work, 'conv', 'images.tar');
    const out = join(work, 'conv', 'from-docker');
    const r = await ocisave(['convert', tar, '-o', out, '--format', 'oci']);
    expect(r.code, r.stderr).toBe(0);
    // OCI-typed images keep the registry's manifest bytes: app/web's index (holding the amd64
    // manifest the docker tar kept), and tool's manifest.
    expect(sha(await skopeoInspectRaw(`oci:${out}:localhost/app/web:1.0`))).toBe(fixture('app/web:1.0').digest);
    const web = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', `oci:${out}:localhost/app/web:1.0`])).stdout) as { Architecture: string; Layers: string[] };
    expect(web.Architecture).toBe('amd64');
    expect(web.Layers).toEqual(amd64Of('app/web:1.0').layers);
    expect(sha(await skopeoInspectRaw(`oci:${out}:localhost/nested/deep/repo/tool:v2`))).toBe(fixture('nested/deep/repo/tool:v2').digest);
    // alpine is docker-typed: its list is converted to an OCI index (as skopeo copy does), its layers kept.
    const alpine = JSON.parse(await skopeoInspectRaw(`oci:${out}:localhost/library/alpine:3.19`)) as { mediaType: string };
    expect(alpine.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const info = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', `oci:${out}:localhost/library/alpine:3.19`])).stdout) as { Layers: string[] };
    expect(info.Layers).toEqual(amd64Of('library/alpine:3.19').layers);
  });

  it('legacy docker tar (podman save) → OCI layout: skopeo reads it, config and layers as the source', async () => {
    const legacy = join(work, 'conv', 'podman-save.tar');
    await podman(join(work, 'podman'), ['save', '--format', 'docker-archive', '-o', legacy, 'localhost/test/whiteouts:latest']);
    const out = join(work, 'conv', 'from-legacy');
    const r = await ocisave(['convert', legacy, '-o', out, '--format', 'oci']);
    expect(r.code, r.stderr).toBe(0);
    const m = JSON.parse(await skopeoInspectRaw(`oci:${out}:localhost/test/whiteouts:latest`)) as { config: { digest: string }; layers: unknown[] };
    expect(m.config.digest).toBe(fixture('test/whiteouts:latest').config);
    expect(m.layers).toHaveLength(fixture('test/whiteouts:latest').layers!.length);
    await skopeo(['inspect', `oci:${out}:localhost/test/whiteouts:latest`]);
  });

  it('OCI layout (skopeo) → registry layout: docker-registry serves it, skopeo pulls it with the source digests', async () => {
    const out = join(work, 'conv', 'from-oci');
    const r = await ocisave(['convert', skopeoOci, '-o', out, '--format', 'registry']);
    expect(r.code, r.stderr).toBe(0);
    const served = await servers.serve(out);
    // skopeo names the root by tag only ("web"): the repository is named after the layout directory.
    const name = `${served.host}/skopeo-oci:web`;
    expect(sha(await skopeoInspectRaw(name))).toBe(fixture('app/web:1.0').digest);
    for (const child of fixture('app/web:1.0').children) {
      expect(sha(await skopeoInspectRaw(`${served.host}/skopeo-oci@${child.digest}`)), child.platform).toBe(child.digest);
    }
    const pulled = join(work, 'pulled');
    await skopeoCopy(name, `oci:${pulled}:x`, ['--all']);
    expect(sha(await skopeoInspectRaw(`oci:${pulled}:x`))).toBe(fixture('app/web:1.0').digest);
  });

  it('refuses a blob whose bytes do not match its name, leaving no output and no staging', async () => {
    const damaged = join(work, 'damaged');
    await cp(layout, damaged, { recursive: true });
    const layer = amd64Of('app/web:1.0').layers.at(-1)!;
    const data = join(damaged, 'docker/registry/v2/blobs/sha256', layer.slice(7, 9), layer.slice(7), 'data');
    const fh = await open(data, 'r+');
    await fh.write(Buffer.from('X'), 0, 1, 100);
    await fh.close();
    const out = join(work, 'conv', 'damaged.tar');
    const r = await ocisave(['convert', damaged, '-o', out, '--format', 'oci-archive', '--platform', 'linux/amd64']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`blob ${layer} holds \\d+ bytes that hash to sha256:[a-f0-9]{64}: the bundle is damaged`));
    expect(existsSync(out)).toBe(false);
    expect(await besideOut(join(work, 'conv'), out)).toEqual([]);
  });

  it('refuses a bundle holding a symbolic link, and never follows it', async () => {
    const linked = join(work, 'linked');
    await cp(skopeoOci, linked, { recursive: true });
    const blob = amd64Of('app/web:1.0').config;
    const file = join(linked, 'blobs/sha256', blob.slice(7));
    await rm(file);
    await symlink('/etc/passwd', file);
    const r = await ocisave(['convert', linked, '-o', join(work, 'conv', 'linked.tar'), '--format', 'docker', '--platform', 'linux/amd64']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`does not hold blob ${blob}`));
    expect(existsSync(join(work, 'conv', 'linked.tar'))).toBe(false);
  });

  it('usage errors exit 2; a missing bundle or an output inside the bundle is one line, exit 1', async () => {
    for (const args of [
      ['convert', layout, '-o', join(work, 'x'), '--format', 'zip'],
      ['convert', layout, '-o', join(work, 'x'), '--platform', 'linux/'],
      ['convert', layout],
      ['convert', layout, '-o', join(work, 'x.tar'), '--format', 'docker', '--keep-index'],
    ]) {
      const r = await ocisave(args);
      expect(r.code, args.join(' ')).toBe(2);
    }
    const missing = await ocisave(['convert', join(work, 'nope'), '-o', join(work, 'x')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toEqual([`ocisave: error: ${join(work, 'nope')}: no such file or directory`]);
    const inside = await ocisave(['convert', layout, '-o', join(layout, 'out'), '--format', 'oci']);
    expect(inside.code).toBe(1);
    expect(inside.stderr).toMatch(/the output must lie outside the bundle/);
    expect(existsSync(join(work, 'x'))).toBe(false);
  });
});
