// Conformance of the archive/layout linkers (docker, oci, oci-archive): outputs appear only when
// complete, hold every blob and manifest with the right digest, and real consumers read them
// (skopeo, podman load, umoci unpack).
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkOutput, type LinkOptions, type OutputFormat } from '../src/link/index.js';
import { toOciNode } from '../src/link/oci-layout.js';
import { blobDataPath, RegistryLayoutWriter } from '../src/link/registry.js';
import { formatReference } from '../src/ref/reference.js';
import { blobsOf, leafManifests, walkNodes, type ManifestNode, type ResolvedImage } from '../src/resolve/graph.js';
import { buildLayer, seededBytes, type BuiltLayer } from './fixtures/index.js';
import { podman, run, runOk, skopeo } from './support/exec.js';
import { GraphBuilder, readTar, readTarEntry, readTree, rmrf, sha, tempDir } from './link-graph.js';

const AMD64 = { os: 'linux', architecture: 'amd64' };
const ARM64 = { os: 'linux', architecture: 'arm64', variant: 'v8' };

interface Fixture {
  work: string;
  builder: GraphBuilder;
  web: ResolvedImage;
  api: ResolvedImage;
  alpine: ResolvedImage;
  pinned: ResolvedImage;
  chart: ResolvedImage;
  multi: ResolvedImage;
  multiAmd64: ManifestNode;
  webManifest: ManifestNode;
  apiManifest: ManifestNode;
  alpineAmd64: ManifestNode;
  layers: Record<string, BuiltLayer>;
}

async function buildFixture(label: string): Promise<Fixture> {
  const work = await tempDir(label);
  const builder = await GraphBuilder.create(join(work, 'cache'));
  const layers = {
    base: await buildLayer([
      { type: 'dir', path: 'bin' },
      { type: 'file', path: 'bin/sh', content: '#!fake shell\n', mode: 0o755 },
      { type: 'dir', path: 'etc' },
      { type: 'file', path: 'etc/os-release', content: 'ID=ocisave-test\n' },
      // Big enough that streaming, not buffering, matters a little.
      { type: 'file', path: 'blob.bin', content: seededBytes('base', 3 << 20) },
    ], { gzipLevel: 1 }),
    web: await buildLayer([{ type: 'dir', path: 'srv' }, { type: 'file', path: 'srv/index.html', content: '<h1>web</h1>\n' }]),
    api: await buildLayer([{ type: 'dir', path: 'app' }, { type: 'file', path: 'app/api', content: 'api v2\n', mode: 0o755 }]),
    alpineAmd64: await buildLayer([{ type: 'file', path: 'arch', content: 'amd64\n' }]),
    alpineArm64: await buildLayer([{ type: 'file', path: 'arch', content: 'arm64\n' }]),
  };
  const webManifest = await builder.image({ format: 'docker', layers: [layers.base, layers.web], config: { Cmd: ['/bin/sh', '-c', 'serve'] } });
  const apiManifest = await builder.image({ format: 'oci', layers: [layers.base, layers.api] });
  const alpineAmd64 = await builder.image({ format: 'oci', layers: [layers.alpineAmd64], platform: AMD64 });
  // The arm64 child is listed by the index but not selected (--platform linux/amd64): not in the graph.
  const alpineArm64 = await builder.image({ format: 'oci', layers: [layers.alpineArm64], platform: ARM64 });
  const web = builder.add('127.0.0.1:5000/app/web:1.0', webManifest);
  const api = builder.add('127.0.0.1:5000/app/api:2.0', apiManifest);
  const alpine = builder.add('alpine:3.19', builder.index([alpineAmd64, alpineArm64], [alpineAmd64]));
  const pinned = builder.add(`127.0.0.1:5000/app/web@${webManifest.digest}`, webManifest);
  const chart = builder.add('127.0.0.1:5000/charts/mysql:9.4.1', await builder.artifact('mysql'));
  // A docker manifest list (docker-typed children), amd64 selected.
  const multiAmd64 = await builder.image({ format: 'docker', layers: [layers.base, layers.alpineAmd64], platform: AMD64 });
  const multiArm64 = await builder.image({ format: 'docker', layers: [layers.alpineArm64], platform: ARM64 });
  const multi = builder.add('127.0.0.1:5000/app/multi:1', builder.index([multiAmd64, multiArm64], [multiAmd64], [], true));
  return { work, builder, web, api, alpine, pinned, chart, multi, multiAmd64, webManifest, apiManifest, alpineAmd64, layers };
}

const outName = (format: OutputFormat) => (format === 'oci' ? 'layout' : `images-${format}.tar`);

/** Files of the output, whatever its form: name → size/sha256. */
async function contents(format: OutputFormat, out: string) {
  return format === 'oci' ? readTree(out) : readTar(out);
}

/** Manifest and blob digests an OCI layout of these images holds (docker-typed manifests in OCI form). */
function ociDigests(images: ResolvedImage[]) {
  const manifests = new Set<string>();
  const blobs = new Set<string>();
  for (const image of images) {
    const root = toOciNode(image.root);
    for (const n of walkNodes(root)) manifests.add(n.digest);
    for (const m of leafManifests(root)) for (const d of blobsOf(m)) blobs.add(d.digest);
  }
  return { manifests, blobs };
}

async function stagingLeftovers(out: string): Promise<string[]> {
  return (await readdir(dirname(out))).filter((n) => n.startsWith(`.${basename(out)}.partial-`));
}

const FORMATS = ['docker', 'oci', 'oci-archive'] as const;

describe.each(FORMATS)('%s output (conformance)', (format) => {
  let fx: Fixture;
  let out: string;
  const warnings: string[] = [];
  let opts: LinkOptions;

  beforeAll(async () => {
    fx = await buildFixture(format);
    out = join(fx.work, 'out', outName(format));
    opts = { graph: fx.builder.graph(), cache: fx.builder.cache, out, onWarning: (w) => warnings.push(w) };
  });
  afterAll(async () => {
    await fx.builder.close();
    await rmrf(fx.work);
  });

  it('appears under its final name only when complete', async () => {
    let calls = 0;
    let finalDuringBuild = true;
    let stagingDuringBuild: string[] = [];
    const t0 = Date.now();
    const result = await linkOutput(format, {
      ...opts,
      onBlob: async () => {
        if (calls++ === 0) {
          finalDuringBuild = existsSync(out);
          stagingDuringBuild = await stagingLeftovers(out);
        }
      },
    });
    console.log(`${format}: linked in ${Date.now() - t0} ms`, result);
    expect(finalDuringBuild).toBe(false);
    expect(stagingDuringBuild).toHaveLength(1);
    expect(calls).toBeGreaterThan(5);
    expect(existsSync(out)).toBe(true);
    expect(await stagingLeftovers(out)).toEqual([]);
    expect(result.path).toBe(out);
    if (format === 'oci') expect(result.linked).toBe(fx.builder.expectedDigests().blobs.size);
  });

  it('holds every manifest and blob once, each under its digest', async () => {
    const files = await contents(format, out);
    for (const [name, info] of files) {
      const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(name);
      if (m) expect(info.digest, name).toBe(`sha256:${m[1]}`);
    }
    const names = new Set(files.keys());
    const has = (d: string) => names.has(`blobs/sha256/${d.slice(7)}`);
    const expected = fx.builder.expectedDigests();
    if (format === 'docker') {
      // Images only, one platform each: leaf manifests, configs and layers; never the chart.
      // The OCI view holds the registry's manifest bytes: roots (indexes whole) and the selected leaves.
      for (const image of [fx.web, fx.api, fx.alpine, fx.multi]) expect(has(image.root.digest), image.input).toBe(true);
      for (const m of [fx.webManifest, fx.apiManifest, fx.alpineAmd64, fx.multiAmd64]) {
        expect(has(m.digest), m.digest).toBe(true);
        for (const d of [m.config, ...m.layers]) expect(has(d.digest), d.digest).toBe(true);
      }
      expect(has((fx.chart.root as ManifestNode).config.digest)).toBe(false);
      const manifest = JSON.parse((await readTarEntry(out, 'manifest.json'))!.toString()) as Array<{ Config: string; RepoTags: string[]; Layers: string[] }>;
      expect(manifest).toHaveLength(4); // web:1.0 and web@digest are one image
      for (const item of manifest) {
        expect(names.has(item.Config)).toBe(true);
        for (const l of item.Layers) expect(names.has(l)).toBe(true);
      }
      expect(manifest.map((i) => i.RepoTags)).toEqual([['127.0.0.1:5000/app/web:1.0'], ['127.0.0.1:5000/app/api:2.0'], ['docker.io/library/alpine:3.19'], ['127.0.0.1:5000/app/multi:1']]);
      expect(manifest[0]!.Layers).toEqual(fx.webManifest.layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`));
      const repositories = JSON.parse((await readTarEntry(out, 'repositories'))!.toString());
      expect(repositories['127.0.0.1:5000/app/web']).toEqual({ '1.0': fx.webManifest.config.digest.slice(7) });
      expect(repositories['docker.io/library/alpine']).toEqual({ '3.19': fx.alpineAmd64.config.digest.slice(7) });
      expect(warnings.some((w) => w.includes('charts/mysql') && w.includes('not a container image'))).toBe(true);
    } else {
      const oci = ociDigests(fx.builder.images);
      for (const d of [...oci.manifests, ...oci.blobs]) expect(has(d), d).toBe(true);
      // Config and layer blobs are the graph's, byte for byte; nothing else (the unselected arm64 children are not there).
      expect(oci.blobs).toEqual(expected.blobs);
      const fileCount = [...files.values()].filter((f) => f.type === 'file').length;
      expect(fileCount).toBe(oci.manifests.size + oci.blobs.size + 2);
      const index = JSON.parse((format === 'oci' ? await readFile(join(out, 'index.json')) : (await readTarEntry(out, 'index.json'))!).toString());
      expect(index.manifests.map((d: { annotations: Record<string, string> }) => d.annotations['org.opencontainers.image.ref.name'])).toEqual(
        [fx.web, fx.api, fx.alpine, fx.pinned, fx.chart, fx.multi].map((i) => formatReference(i.ref)),
      );
      // OCI roots are listed with their own bytes' mediaType/digest/size; docker ones in OCI form.
      expect(index.manifests[2]).toMatchObject({ mediaType: fx.alpine.root.mediaType, digest: fx.alpine.root.digest, size: fx.alpine.root.bytes.length });
      expect(index.manifests[5]).toMatchObject({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: toOciNode(fx.multi.root).digest });
    }
    expect(files.get('oci-layout') ?? (await readTree(out).catch(() => new Map())).get('oci-layout')).toBeTruthy();
  });

  it('a build that throws leaves no output and no staging name', async () => {
    const fresh = join(dirname(out), `failed-${outName(format)}`);
    let calls = 0;
    await expect(
      linkOutput(format, {
        ...opts,
        out: fresh,
        onBlob: () => {
          if (++calls === 3) throw new Error('disk full (simulated)');
        },
      }),
    ).rejects.toThrow(/disk full/);
    expect(existsSync(fresh)).toBe(false);
    expect(await stagingLeftovers(fresh)).toEqual([]);
  });

  it('a failed rebuild keeps the previous output untouched', async () => {
    const before = await contents(format, out);
    await expect(linkOutput(format, { ...opts, onBlob: () => Promise.reject(new Error('killed (simulated)')) })).rejects.toThrow(/killed/);
    expect(await contents(format, out)).toEqual(before);
    expect(await stagingLeftovers(out)).toEqual([]);
  });

  it('a rebuild over an existing output replaces it', async () => {
    const before = await contents(format, out);
    // Something the rebuild must not keep: a stray file in a layout, an archive of other content.
    if (format === 'oci') await writeFile(join(out, 'stray'), 'left from another run');
    else {
      await writeFile(join(dirname(out), 'stray'), 'left from another run');
      await runOk('tar', ['-cf', out, '-C', dirname(out), 'stray']);
    }
    expect(await contents(format, out)).not.toEqual(before);
    await linkOutput(format, opts);
    expect(await contents(format, out)).toEqual(before);
  });

  if (format === 'docker') {
    it('is read by skopeo (docker-archive: and, through its OCI index, oci-archive:)', async () => {
      const raw = JSON.parse((await skopeo(['inspect', '--raw', `docker-archive:${out}:127.0.0.1:5000/app/web:1.0`])).stdout);
      expect(raw.config.digest).toBe(fx.webManifest.config.digest);
      // The short name matches too: skopeo normalises both sides.
      const alpine = JSON.parse((await skopeo(['inspect', '--raw', `docker-archive:${out}:alpine:3.19`])).stdout);
      expect(alpine.config.digest).toBe(fx.alpineAmd64.config.digest);
      const api = JSON.parse((await skopeo(['inspect', `docker-archive:${out}:127.0.0.1:5000/app/api:2.0`])).stdout);
      expect(api.Layers).toHaveLength(2);
      // The embedded OCI layout has the registry's bytes (OCI-typed ones are found by name by skopeo).
      const rawOci = (await skopeo(['inspect', '--raw', `oci-archive:${out}:127.0.0.1:5000/app/api:2.0`])).stdout;
      expect(sha(rawOci)).toBe(fx.apiManifest.digest);
      const rawIndex = (await skopeo(['inspect', '--raw', `oci-archive:${out}:docker.io/library/alpine:3.19`])).stdout;
      expect(sha(rawIndex)).toBe(fx.alpine.root.digest);
      const index = JSON.parse((await readTarEntry(out, 'index.json'))!.toString());
      expect(index.manifests.map((d: { digest: string }) => d.digest)).toEqual([fx.web, fx.pinned, fx.api, fx.alpine, fx.multi].map((i) => i.root.digest));
    });

    it('is loaded by podman load (every image, tags, image IDs = config digests)', async () => {
      const root = join(fx.work, 'podman');
      const t0 = Date.now();
      const load = await podman(root, ['load', '-i', out]);
      console.log(`podman load: ${Date.now() - t0} ms\n${load.stdout}`);
      const images = JSON.parse((await podman(root, ['images', '--format', 'json'])).stdout) as Array<{ Id: string; Names?: string[] }>;
      const byId = new Map(images.map((i) => [i.Id, i.Names ?? []]));
      expect(byId.get(fx.webManifest.config.digest.slice(7))).toContain('127.0.0.1:5000/app/web:1.0');
      expect(byId.get(fx.apiManifest.config.digest.slice(7))).toContain('127.0.0.1:5000/app/api:2.0');
      expect(byId.get(fx.alpineAmd64.config.digest.slice(7))).toContain('docker.io/library/alpine:3.19');
      expect(byId.get(fx.multiAmd64.config.digest.slice(7))).toContain('127.0.0.1:5000/app/multi:1');
      expect(images).toHaveLength(4);
    });
  }

  if (format === 'oci') {
    it('is read by skopeo oci:DIR:NAME with full reference names (bytes as fetched)', async () => {
      for (const image of [fx.web, fx.api, fx.alpine, fx.pinned, fx.chart, fx.multi]) {
        const raw = (await skopeo(['inspect', '--raw', `oci:${out}:${formatReference(image.ref)}`])).stdout;
        expect(raw).toBe(toOciNode(image.root).bytes.toString());
      }
      // OCI content keeps its bytes; docker-typed content keeps its config and layer blobs.
      for (const image of [fx.api, fx.alpine, fx.chart]) expect(toOciNode(image.root)).toBe(image.root);
      const web = JSON.parse((await skopeo(['inspect', `oci:${out}:127.0.0.1:5000/app/web:1.0`])).stdout);
      expect(web.Digest).toBe(toOciNode(fx.webManifest).digest);
      expect(web.Layers).toEqual(fx.webManifest.layers.map((l) => l.digest));
      const webCfg = await skopeo(['inspect', '--config', '--raw', `oci:${out}:127.0.0.1:5000/app/web:1.0`]);
      expect(sha(webCfg.stdout)).toBe(fx.webManifest.config.digest);
      const multi = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', `oci:${out}:127.0.0.1:5000/app/multi:1`])).stdout);
      expect(multi.Layers).toEqual(fx.multiAmd64.layers.map((l) => l.digest));
      // The index resolves to its selected child.
      const alpine = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', `oci:${out}:docker.io/library/alpine:3.19`])).stdout);
      expect(alpine.Digest).toBe(fx.alpine.root.digest);
      const cfg = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', '--config', `oci:${out}:docker.io/library/alpine:3.19`])).stdout);
      expect(cfg.architecture).toBe('amd64');
      const copy = join(fx.work, 'copied');
      await skopeo(['copy', '--quiet', `oci:${out}:127.0.0.1:5000/app/api:2.0`, `dir:${copy}`]);
      expect(existsSync(join(copy, 'manifest.json'))).toBe(true);
    });

    it('is unpacked by umoci --image DIR:NAME', async () => {
      for (const name of ['127.0.0.1:5000/app/web:1.0', `127.0.0.1:5000/app/web@${fx.webManifest.digest}`]) {
        const bundle = join(fx.work, `bundle-${sha(name).slice(7, 15)}`);
        await runOk('umoci', ['unpack', '--rootless', '--image', `${out}:${name}`, bundle]);
        expect(await readFile(join(bundle, 'rootfs', 'srv', 'index.html'), 'utf8')).toBe('<h1>web</h1>\n');
        expect((await stat(join(bundle, 'rootfs', 'bin', 'sh'))).mode & 0o777).toBe(0o755);
      }
    });
  }

  if (format === 'oci-archive') {
    it('is read by skopeo oci-archive:FILE:NAME (bytes as fetched)', async () => {
      for (const image of [fx.web, fx.api, fx.alpine, fx.chart, fx.multi]) {
        const raw = (await skopeo(['inspect', '--raw', `oci-archive:${out}:${formatReference(image.ref)}`])).stdout;
        expect(raw).toBe(toOciNode(image.root).bytes.toString());
      }
      const api = JSON.parse((await skopeo(['inspect', `oci-archive:${out}:127.0.0.1:5000/app/api:2.0`])).stdout);
      expect(api.Digest).toBe(fx.apiManifest.digest);
      expect(api.Layers).toEqual(fx.apiManifest.layers.map((l) => l.digest));
    });
  }
});

describe('docker output specifics', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await buildFixture('docker-x');
  });
  afterAll(async () => {
    await fx.builder.close();
    await rmrf(fx.work);
  });
  const graphOf = (images: ResolvedImage[]) => ({ ...fx.builder.graph(), images });

  it('uncompressed: docker-save layer tars named by diff_id, loaded by podman', async () => {
    const out = join(fx.work, 'uncompressed.tar');
    const t0 = Date.now();
    await linkOutput('docker', { graph: graphOf([fx.web, fx.api, fx.alpine, fx.multi]), cache: fx.builder.cache, out, uncompressed: true });
    console.log(`docker --uncompressed: ${Date.now() - t0} ms`);
    const files = await readTar(out);
    for (const l of Object.values(fx.layers).filter((l) => l !== fx.layers.alpineArm64)) {
      const f = files.get(`blobs/sha256/${l.diffId.slice(7)}`);
      expect(f?.digest).toBe(l.diffId);
      expect(f?.size).toBe(l.tar.length);
      expect(files.has(`blobs/sha256/${l.digest.slice(7)}`)).toBe(false);
    }
    const manifest = JSON.parse((await readTarEntry(out, 'manifest.json'))!.toString());
    expect(manifest[0].Layers).toEqual([fx.layers.base.diffId, fx.layers.web.diffId].map((d) => `blobs/sha256/${d.slice(7)}`));
    // The OCI view describes what is in the tar: rewritten manifests over the uncompressed layers.
    const viaOci = (await skopeo(['inspect', '--raw', `oci-archive:${out}:127.0.0.1:5000/app/web:1.0`])).stdout;
    expect(JSON.parse(viaOci).layers.map((l: { digest: string }) => l.digest)).toEqual([fx.layers.base.diffId, fx.layers.web.diffId]);
    const root = join(fx.work, 'podman-u');
    await podman(root, ['load', '-i', out]);
    const images = JSON.parse((await podman(root, ['images', '--format', 'json'])).stdout) as Array<{ Id: string }>;
    expect(images.map((i) => i.Id).sort()).toEqual([fx.webManifest, fx.apiManifest, fx.alpineAmd64, fx.multiAmd64].map((m) => m.config.digest.slice(7)).sort());
  });

  it('uncompressed: a layer that does not match its diff_id is a clear error, and no archive is left', async () => {
    const liar = await fx.builder.image({ format: 'oci', layers: [fx.layers.base, fx.layers.api], diffIds: [fx.layers.base.diffId, fx.layers.web.diffId] });
    const image = { input: '127.0.0.1:5000/app/liar:1', ref: { registry: '127.0.0.1:5000', repository: 'app/liar', tag: '1' }, root: liar };
    const out = join(fx.work, 'liar.tar');
    await expect(linkOutput('docker', { graph: graphOf([image]), cache: fx.builder.cache, out, uncompressed: true })).rejects.toThrow(
      new RegExp(`app/liar:1: layer 1 \\(${fx.layers.api.digest}\\) decompresses to ${fx.layers.api.diffId}, but the image config's rootfs.diff_ids says ${fx.layers.web.diffId}`),
    );
    expect(existsSync(out)).toBe(false);
    expect(await stagingLeftovers(out)).toEqual([]);
  });

  it('a multi-platform reference with more than one platform selected is refused, naming them', async () => {
    const arm = await fx.builder.image({ format: 'oci', layers: [fx.layers.alpineArm64], platform: ARM64 });
    const both = { ...fx.alpine, root: fx.builder.index([fx.alpineAmd64, arm]) };
    await expect(linkOutput('docker', { graph: graphOf([both]), cache: fx.builder.cache, out: join(fx.work, 'multi.tar') })).rejects.toThrow(
      'alpine:3.19 (docker.io/library/alpine:3.19) is a multi-platform image and 2 platforms were selected (linux/amd64, linux/arm64/v8); a docker archive holds one platform per reference: pass --platform os/arch, e.g. --platform linux/amd64',
    );
  });

  it('artifacts only: nothing to write is an error', async () => {
    await expect(linkOutput('docker', { graph: graphOf([fx.chart]), cache: fx.builder.cache, out: join(fx.work, 'chart.tar') })).rejects.toThrow(/no container image/);
  });

  it('a blob missing from the cache is named, and nothing is written', async () => {
    const gone = await buildLayer([{ type: 'file', path: 'gone', content: 'x' }]);
    const m = await fx.builder.image({ format: 'oci', layers: [gone] });
    await fx.builder.cache.forgetBlob(gone.digest);
    const image = { input: 'x/gone:1', ref: { registry: 'docker.io', repository: 'x/gone', tag: '1' }, root: m };
    for (const format of FORMATS) {
      const out = join(fx.work, `gone-${format}`);
      await expect(linkOutput(format, { graph: graphOf([image]), cache: fx.builder.cache, out })).rejects.toThrow(`blob ${gone.digest} is not in the cache`);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('refuses to replace a directory that is not an OCI layout', async () => {
    const dir = join(fx.work, 'precious');
    await runOk('mkdir', ['-p', dir]);
    await writeFile(join(dir, 'thesis.txt'), 'do not delete');
    await expect(linkOutput('oci', { graph: graphOf([fx.web]), cache: fx.builder.cache, out: dir })).rejects.toThrow(/not an OCI layout/);
    await expect(linkOutput('docker', { graph: graphOf([fx.web]), cache: fx.builder.cache, out: dir })).rejects.toThrow(/is a directory/);
    expect(await readFile(join(dir, 'thesis.txt'), 'utf8')).toBe('do not delete');
  });

  it('oci with preserveDigests keeps docker manifests byte-for-byte (and skopeo 1.9 cannot look those up by name)', async () => {
    const out = join(fx.work, 'preserved');
    await linkOutput('oci', { graph: graphOf([fx.web, fx.api, fx.multi]), cache: fx.builder.cache, out, preserveDigests: true });
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.manifests.map((d: { digest: string }) => d.digest)).toEqual([fx.web.root.digest, fx.api.root.digest, fx.multi.root.digest]);
    expect(await readFile(join(out, 'blobs', 'sha256', fx.multiAmd64.digest.slice(7)))).toEqual(fx.multiAmd64.bytes);
    expect((await skopeo(['inspect', '--raw', `oci:${out}:127.0.0.1:5000/app/api:2.0`])).stdout).toBe(fx.api.root.bytes.toString());
    const r = await run('skopeo', ['inspect', '--raw', `oci:${out}:127.0.0.1:5000/app/web:1.0`]);
    expect(r.stderr).toMatch(/no descriptor found/);
  });

  it('is reproducible: the same inputs give the same archive bytes', async () => {
    const a = join(fx.work, 'a.tar');
    const b = join(fx.work, 'b.tar');
    await linkOutput('docker', { graph: graphOf([fx.web, fx.api]), cache: fx.builder.cache, out: a });
    await linkOutput('docker', { graph: graphOf([fx.web, fx.api]), cache: fx.builder.cache, out: b });
    expect(sha(await readFile(a))).toBe(sha(await readFile(b)));
    // The tool itself sees nothing odd about it either.
    expect((await run('tar', ['-tf', a])).code).toBe(0);
  });
});

describe('registry layout written fresh (a save staging a new output)', () => {
  let fx: Fixture;
  beforeAll(async () => {
    fx = await buildFixture('registry-fresh');
  });
  afterAll(async () => {
    await fx.builder.close();
    await rmrf(fx.work);
  });
  const images = () => [fx.web, fx.api, fx.alpine, fx.pinned, fx.chart, fx.multi];

  it('writes the same files as the writer that looks first, the directory its own', async () => {
    const looked = join(fx.work, 'looked');
    await linkOutput('registry', { graph: { ...fx.builder.graph(), images: images() }, cache: fx.builder.cache, out: looked });
    const fresh = join(fx.work, 'fresh', 'layout');
    const writer = new RegistryLayoutWriter(fresh, fx.builder.cache, undefined, false, true);
    await Promise.all(images().map((image) => writer.add(image)));
    expect(await readTree(fresh)).toEqual(await readTree(looked));
    // Blob data is the cache's file, hard-linked.
    const data = blobDataPath(fresh, fx.layers.base.digest);
    expect((await stat(data)).ino).toBe((await stat(fx.builder.cache.blobSource(fx.layers.base.digest).path)).ino);
  });

  it('refuses a directory that is there before it, and writes nothing into it', async () => {
    const taken = join(fx.work, 'taken');
    await mkdir(taken);
    await writeFile(join(taken, 'planted'), 'x');
    const writer = new RegistryLayoutWriter(taken, fx.builder.cache, undefined, false, true);
    await expect(writer.add(fx.web)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(writer.add(fx.api)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readdir(taken)).toEqual(['planted']);
  });
});
