// Two saves in one process through the library (issue 14): the directories a link run made are
// that run's own knowledge. Emptying the output between saves must not make the second fail
// (a process-wide "made" set once skipped the mkdir and hit ENOENT).
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { save } from '../src/engine/pipeline.js';
import { buildLayer, pushImage, type PushedManifest } from './fixtures/index.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

let registry: RunningRegistry;
let work: string;
let pushed: PushedManifest;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-twice-'));
  registry = await startRegistry();
  const layer = await buildLayer([{ type: 'file', path: 'etc/twice', content: 'saved twice in one process\n', mode: 0o644 }]);
  pushed = await pushImage(registry.url, 'test/twice', 'v1', { format: 'oci', layers: [layer] });
});

afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

/** The registry layout's data file of a digest, spelled out as distribution stores it. */
const dataFile = (root: string, digest: string) => {
  const hex = digest.slice('sha256:'.length);
  return join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
};
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function expectLayout(out: string): Promise<void> {
  for (const d of [pushed.digest, pushed.config!.digest, ...pushed.layers.map((l) => l.digest)]) {
    expect(sha256(await readFile(dataFile(out, d))), d).toBe(d);
  }
  const current = join(out, 'docker/registry/v2/repositories/test/twice/_manifests/tags/v1/current/link');
  expect(await readFile(current, 'utf8')).toBe(pushed.digest);
}

describe('two saves in one process', () => {
  it('writes a registry layout again after its directory was emptied', async () => {
    // An existing output directory: the layout is written into it in place (no staging name).
    const out = join(work, 'bundle');
    await mkdir(out);
    const opts = { format: 'registry' as const, out, platforms: 'all' as const, cacheDir: join(work, 'cache'), plainHttp: true };
    const ref = `${registry.host}/test/twice:v1`;

    const first = await save([ref], opts);
    expect(first.images).toBe(1);
    await expectLayout(out);

    for (const name of await readdir(out)) await rm(join(out, name), { recursive: true });
    expect(await readdir(out)).toEqual([]);

    const second = await save([ref], opts);
    expect(second.images).toBe(1);
    expect(second.downloaded.blobs).toBe(0); // from the cache: only the layout is rewritten
    await expectLayout(out);
  });
});
