// Issue 15: one fleet, N processes. Three `mirror --shard K/3` processes (each its own cache, as
// three machines would have) fill one real docker-registry; skopeo pulls every reference back with
// the source's digests; a second run transfers nothing; a tag moved at the source moves at the
// target. Three sharded saves merged with `merge` are served by docker-registry with the same digests.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ocisave, summaryOf, type CliResult } from './support/cli.js';
import { skopeoCopy, skopeoInspectRaw } from './support/exec.js';
import { layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { pushManifest, seedStandardFixtures } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

vi.setConfig({ testTimeout: 300_000, hookTimeout: 300_000 });

const sha = (s: string | Buffer) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const SHARDS = ['1/3', '2/3', '3/3'];

let source: RunningRegistry;
let target: RunningRegistry;
let fx: FixtureSet;
let work: string;
let list: string;
/** Every input: each fixture tag, and digest-only references (an index, one platform of another). */
let inputs: string[];
/** input → the digest it must name wherever it lands. */
const want = new Map<string, string>();
const servers = layoutServers();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-scale-'));
  [source, target] = await Promise.all([startRegistry(), startRegistry()]);
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 3 << 20 });
  for (const ref of fx.references) want.set(ref, fx.refs[ref]!.digest);
  const web11 = fx.refs[`${fx.registry}/app/web:1.1`]!;
  const alpine = fx.refs[`${fx.registry}/library/alpine:3.19`]!;
  want.set(`${fx.registry}/app/web@${web11.digest}`, web11.digest);
  want.set(`${fx.registry}/library/alpine@${alpine.children[1]!.digest}`, alpine.children[1]!.digest);
  inputs = [...want.keys()];
  list = join(work, 'images.txt');
  await writeFile(list, `# the fleet\n${inputs.join('\n')}\n`);
});

afterAll(async () => {
  await servers.stopAll();
  await Promise.allSettled([source?.stop(), target?.stop()]);
  await rm(work, { recursive: true, force: true });
});

/** Where an input lands under another host: same repository, same tag or digest. */
const on = (host: string, input: string) => input.replace(`${fx.registry}/`, `${host}/`);

function ok(r: CliResult): any {
  expect(r.code, r.stderr).toBe(0);
  return summaryOf(r);
}

/** Each shard in its own process with its own cache, all at once. */
async function mirrorShards(extra: string[] = []): Promise<any[]> {
  const runs = await Promise.all(
    SHARDS.map((s, i) => ocisave(['mirror', '-f', list, '--to', target.host, '--shard', s, '--cache', join(work, `cache-${i}`), '--chunk-size', '1MiB', '--json', ...extra], { timeoutMs: 280_000 })),
  );
  return runs.map((r) => (r.stdout.trim() ? ok(r) : (expect(r.code, r.stderr).toBe(0), undefined))).filter(Boolean);
}

/** Every input and every index child, as served by `host`, hashes to the source's digest. */
async function expectServed(host: string): Promise<void> {
  for (const [input, digest] of want) {
    expect(sha(await skopeoInspectRaw(on(host, input))), input).toBe(digest);
    const f = fx.refs[input];
    for (const child of f?.children ?? []) expect(sha(await skopeoInspectRaw(`${host}/${f!.repository}@${child.digest}`)), `${input} ${child.platform}`).toBe(child.digest);
  }
}

async function catalog(r: RunningRegistry): Promise<string[]> {
  const res = await request(`${r.url}/v2/_catalog`);
  return ((await res.body.json()) as { repositories: string[] }).repositories;
}

describe('ocisave mirror, sharded', () => {
  it('--dry-run prints the plan and sends nothing', async () => {
    const plan = ok(await ocisave(['mirror', ...inputs, '--to', target.host, '--cache', join(work, 'cache-plan'), '--dry-run', '--json']));
    expect(plan.dryRun).toBe(true);
    expect(plan.images).toHaveLength(inputs.length);
    for (const i of plan.images) {
      expect(i.tag === 'new' || i.tag === 'digest', i.target).toBe(true);
      expect(i.blobs.missing, i.target).toBe(i.blobs.total);
    }
    expect(plan.blobs.missing).toBeGreaterThan(0);
    expect(await catalog(target)).toEqual([]);
  });

  it('three processes mirror one fleet into one registry; skopeo pulls every reference with the source digests', async () => {
    const summaries = await mirrorShards();
    const pushed = summaries.flatMap((s) => s.references as string[]);
    // Every input landed once, and shards split by repository: no repository in two shards.
    expect(pushed.sort()).toEqual(inputs.map((i) => on(target.host, i)).sort());
    const reposOf = (s: any) => new Set((s.references as string[]).map((r) => r.replace(/[:@][^/]*$/, '')));
    const sets = summaries.map(reposOf);
    for (let a = 0; a < sets.length; a++) for (let b = a + 1; b < sets.length; b++) for (const r of sets[a]!) expect(sets[b]!.has(r), r).toBe(false);
    for (const s of summaries) {
      expect(s.failures).toEqual([]);
      expect(s.tags.moved).toBe(0);
      expect(s.tags.unchanged).toBe(0);
      expect(s.blobs.transferred).toBeGreaterThan(0);
    }
    expect(summaries.reduce((n, s) => n + s.images, 0)).toBe(inputs.length);
    await expectServed(target.host);
    // A few real pulls, every platform of a multi-arch image, a chart, and the big blob.
    const out = join(work, 'pulled');
    for (const [ref, name] of [['app/web:1.0', 'web'], ['nested/deep/repo/tool:v2', 'tool'], ['big/blob:latest', 'big']] as const) {
      await skopeoCopy(`${target.host}/${ref}`, `oci:${out}:${name}`, ['--all', '--preserve-digests']);
    }
  });

  it('a second run transfers 0 blobs and says so', async () => {
    const summaries = await mirrorShards();
    for (const s of summaries) {
      expect(s.failures).toEqual([]);
      expect(s.blobs.transferred).toBe(0);
      expect(s.blobs.uploaded).toBe(0);
      expect(s.manifests.pushed).toBe(0);
      expect(s.tags.new + s.tags.moved).toBe(0);
    }
    const text = await ocisave(['mirror', '-f', list, '--to', target.host, '--cache', join(work, 'cache-0')]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('0 blobs transferred');
  });

  it('a tag moved at the source moves at the target (and --dry-run shows it first)', async () => {
    const web10 = fx.refs[`${fx.registry}/app/web:1.0`]!;
    const web11 = `${fx.registry}/app/web:1.1`;
    await pushManifest(source.url, 'app/web', '1.1', fx.manifests[web10.digest]!.json, web10.mediaType);
    want.set(web11, web10.digest);
    const plan = ok(await ocisave(['mirror', web11, '--to', target.host, '--cache', join(work, 'cache-plan'), '--dry-run', '--json']));
    expect(plan.images[0]).toMatchObject({ tag: 'moved', from: fx.refs[web11]!.digest, digest: web10.digest });
    const summaries = await mirrorShards();
    const moved = summaries.flatMap((s) => s.moved);
    expect(moved).toEqual([{ reference: on(target.host, web11), from: fx.refs[web11]!.digest, to: web10.digest }]);
    expect(summaries.reduce((n, s) => n + s.blobs.transferred, 0)).toBe(0);
    expect(sha(await skopeoInspectRaw(on(target.host, web11)))).toBe(web10.digest);
  });

  it('--shard must be K/N with 1 ≤ K ≤ N (usage error)', async () => {
    for (const bad of ['4/3', '0/3', '1/0', 'x']) {
      const r = await ocisave(['mirror', ...inputs.slice(0, 1), '--to', target.host, '--shard', bad]);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toContain('--shard');
    }
  });
});

describe('sharded saves merged', () => {
  let shards: string[];

  it('three sharded saves merge into a layout docker-registry serves with every source digest', async () => {
    shards = SHARDS.map((_, i) => join(work, `shard-${i + 1}`));
    const cache = join(work, 'cache-save');
    for (const [i, s] of SHARDS.entries()) {
      const r = await ocisave(['save', '-f', list, '--shard', s, '-o', shards[i]!, '--cache', cache, '-q']);
      expect(r.code, r.stderr).toBe(0);
    }
    const merged = join(work, 'merged');
    const report = ok(await ocisave(['merge', ...shards, '-o', merged, '--json']));
    expect(report.tags).toBe(fx.references.length);
    const served = await servers.serve(merged);
    await expectServed(served.host);
    const verify = await ocisave(['verify', merged, '--json']);
    expect(summaryOf(verify).ok, verify.stdout).toBe(true);
  });

  it('a tag naming different manifests in two inputs is an error naming both; nothing is written', async () => {
    // Move app/web:1.1 at the source back to where it was: a save now disagrees with the shards.
    const web11 = fx.refs[`${fx.registry}/app/web:1.1`]!;
    await pushManifest(source.url, 'app/web', '1.1', fx.manifests[web11.digest]!.json, web11.mediaType);
    const moved = join(work, 'moved');
    const r = await ocisave(['save', `${fx.registry}/app/web:1.1`, '-o', moved, '--cache', join(work, 'cache-save'), '-q']);
    expect(r.code, r.stderr).toBe(0);
    const out = join(work, 'conflict');
    const m = await ocisave(['merge', ...shards, moved, '-o', out]);
    expect(m.code).toBe(1);
    const holder = shards.find((s) => existsSync(join(s, 'docker/registry/v2/repositories/app/web')))!;
    expect(m.stderr).toContain('app/web:1.1');
    expect(m.stderr).toContain(holder);
    expect(m.stderr).toContain(moved);
    expect(m.stderr).toContain(web11.digest);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses an input that is not a registry layout, and an output that exists', async () => {
    const oci = join(work, 'oci');
    const r = await ocisave(['save', `${fx.registry}/test/whiteouts:latest`, '--format', 'oci', '-o', oci, '--cache', join(work, 'cache-save'), '-q']);
    expect(r.code, r.stderr).toBe(0);
    const notLayout = await ocisave(['merge', shards[0]!, oci, '-o', join(work, 'never')]);
    expect(notLayout.code).toBe(1);
    expect(notLayout.stderr).toContain(`${oci} is not a registry layout (format: oci)`);
    expect(existsSync(join(work, 'never'))).toBe(false);
    const exists = await ocisave(['merge', shards[0]!, '-o', shards[1]!]);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toContain(`${shards[1]} already exists`);
  });
});
