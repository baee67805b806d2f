// End to end through the real registry: save → docker / oci / oci-archive outputs read by real
// consumers, and `ocisave unpack` (the commander command, in-process) against umoci.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unpack as unpackImage } from '../src/api/unpack.js';
import { unpackCommand } from '../src/cli/unpack.js';
import { SaveError } from '../src/engine/errors.js';
import { save } from '../src/engine/pipeline.js';
import { AMD64, seedStandardFixtures, WHITEOUTS_TREE, type FixtureSet } from './fixtures/index.js';
import { podman, run, runOk, skopeo } from './support/exec.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { describeTree, rmrf, sha, tempDir } from './link-graph.js';

let registry: RunningRegistry;
let fx: FixtureSet;
let work: string;
let cache: string;

beforeAll(async () => {
  registry = await startRegistry();
  fx = await seedStandardFixtures(registry.url, { skipBig: true });
  work = await tempDir('link-e2e');
  cache = join(work, 'cache');
});
afterAll(async () => {
  await registry?.stop();
  await rmrf(work);
});

const ref = (repoTag: string) => `${fx.registry}/${repoTag}`;

async function unpack(args: string[]): Promise<string> {
  let out = '';
  const cmd = unpackCommand({ stdout: { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream });
  cmd.exitOverride();
  await cmd.parseAsync([...args, '--cache', cache, '--plain-http', '--quiet'], { from: 'user' });
  return out;
}

describe('ocisave unpack', () => {
  it('unpacks test/whiteouts like umoci, and as the fixture says', async () => {
    const out = join(work, 'rootfs-wh');
    const setSince = Math.floor(Date.now() / 1000);
    const t0 = Date.now();
    const printed = await unpack([ref('test/whiteouts:latest'), out]);
    console.log(`unpack (fetch + unpack) ${Date.now() - t0} ms: ${printed.trim()}`);
    expect(printed).toMatch(/unpacked .*test\/whiteouts:latest \(sha256:[a-f0-9]{64}, 3 layers\)/);

    const layout = join(work, 'wh-layout');
    await runOk('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref('test/whiteouts:latest')}`, `oci:${layout}:wh`]);
    const bundle = join(work, 'wh-bundle');
    await runOk('umoci', ['unpack', '--rootless', '--image', `${layout}:wh`, bundle]);
    const ours = await describeTree(out, { mtimes: true, setSince });
    expect(ours).toEqual(await describeTree(join(bundle, 'rootfs'), { mtimes: true, setSince }));

    for (const [path, e] of Object.entries(WHITEOUTS_TREE.entries)) {
      const got = ours[path];
      expect(got?.type, path).toBe(e.type);
      if (e.type !== 'symlink') expect(got?.mode, path).toBe(e.mode);
      if (e.content !== undefined) expect(got?.digest, path).toBe(sha(e.content));
      if (e.target !== undefined) expect(got?.target, path).toBe(e.target);
      if (e.hardlinkOf) expect(got?.links, path).toContain(e.hardlinkOf);
    }
    for (const path of WHITEOUTS_TREE.absent) expect(ours[path], path).toBeUndefined();
  });

  it('picks the platform asked for from a multi-arch image, and refuses several', async () => {
    const out = join(work, 'rootfs-arm64');
    await unpack([ref('library/alpine:3.19'), out, '--platform', 'linux/arm64']);
    expect(existsSync(join(out, 'lib', 'ld-musl-arm64.so.1'))).toBe(true);
    await expect(unpack([ref('library/alpine:3.19'), join(work, 'rootfs-all'), '--platform', 'all'])).rejects.toThrow(
      /multi-platform image and 3 platforms were selected \(linux\/amd64, linux\/arm64\/v8, linux\/arm\/v7\).*--platform os\/arch/,
    );
    expect(existsSync(join(work, 'rootfs-all'))).toBe(false);
  });

  it('refuses a chart', async () => {
    await expect(unpack([ref('charts/webapp:0.1.0'), join(work, 'rootfs-chart')])).rejects.toThrow(/not a container image/);
  });

  it('through the library with keepGoing, a missing tag rejects with its own code and writes nothing', async () => {
    const out = join(work, 'rootfs-missing');
    const missing = ref('library/alpine:no-such-tag');
    const err = await unpackImage({ reference: missing, out, cacheDir: cache, plainHttp: true, keepGoing: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SaveError);
    expect(err).toMatchObject({ code: 'MANIFEST_UNKNOWN' });
    expect((err as Error).message).toContain(missing);
    expect(existsSync(out)).toBe(false);
  });
});

describe('save to docker, oci, oci-archive', () => {
  const inputs = () => [ref('app/web:1.0'), ref('library/alpine:3.19'), ref('nested/deep/repo/tool:v2'), ref('test/whiteouts:latest')];

  it('docker: podman loads every image with its config digest as ID', async () => {
    const out = join(work, 'save-docker.tar');
    const t0 = Date.now();
    await save(inputs(), { format: 'docker', out, platforms: [AMD64], cacheDir: cache, plainHttp: true });
    console.log(`save --format docker ${Date.now() - t0} ms`);
    const root = join(work, 'podman');
    await podman(root, ['load', '-i', out]);
    const images = JSON.parse((await podman(root, ['images', '--format', 'json'])).stdout) as Array<{ Id: string; Names?: string[] }>;
    const web = fx.refs[ref('app/web:1.0')]!.children.find((c) => c.platform === 'linux/amd64')!;
    expect(images.find((i) => i.Id === web.config.slice(7))?.Names).toContain(ref('app/web:1.0'));
    const alpine = fx.refs[ref('library/alpine:3.19')]!.children.find((c) => c.platform === 'linux/amd64')!;
    expect(images.find((i) => i.Id === alpine.config.slice(7))?.Names).toContain(ref('library/alpine:3.19'));
    expect(images).toHaveLength(4);
    // The embedded OCI layout keeps the registry's digests: the OCI index of app/web is there byte for byte.
    const raw = (await skopeo(['inspect', '--raw', `oci-archive:${out}:${ref('app/web:1.0')}`])).stdout;
    expect(sha(raw)).toBe(fx.refs[ref('app/web:1.0')]!.digest);
  });

  it('oci: skopeo copies each name back to the registry (OCI content keeps its digests), umoci unpacks', async () => {
    const out = join(work, 'save-oci');
    await save(inputs(), { format: 'oci', out, platforms: [AMD64], cacheDir: cache, plainHttp: true });
    for (const r of [ref('app/web:1.0'), ref('nested/deep/repo/tool:v2'), ref('library/alpine:3.19')]) {
      await runOk('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${out}:${r}`, `docker://${fx.registry}/copied/${r.split('/').pop()}`]);
    }
    // OCI-typed images round-trip with the registry's digest (the copy of a one-platform index is its manifest).
    const tool = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${fx.registry}/copied/tool:v2`]);
    expect(sha(tool.stdout)).toBe(fx.refs[ref('nested/deep/repo/tool:v2')]!.digest);
    const bundle = join(work, 'tool-bundle');
    await runOk('umoci', ['unpack', '--rootless', '--image', `${out}:${ref('nested/deep/repo/tool:v2')}`, bundle]);
    expect((await readFile(join(bundle, 'rootfs', 'etc', 'alpine-release'), 'utf8')).trim()).toBe('3.19.1');
  });

  it('oci-archive: skopeo inspects every name', async () => {
    const out = join(work, 'save-oci.tar');
    await save(inputs(), { format: 'oci-archive', out, platforms: [AMD64], cacheDir: cache, plainHttp: true });
    for (const r of inputs()) {
      const info = JSON.parse((await skopeo(['--override-arch', 'amd64', 'inspect', `oci-archive:${out}:${r}`])).stdout);
      expect(info.Architecture).toBe('amd64');
    }
  });
});
