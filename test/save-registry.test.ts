// Issue 2 end to end: save fixtures from a real registry into a registry v2 layout, serve that
// layout with a second real registry, and pull every saved reference back with skopeo.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { skopeoCopy, skopeoInspectRaw } from './support/exec.js';
import { freePort, layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const sha = sha256;

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
const layouts = layoutServers();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-save-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url);
});

afterAll(async () => {
  await Promise.all([source?.stop(), layouts.stopAll()]);
  await rm(work, { recursive: true, force: true });
});

const serve = layouts.serve;

/** Served name for a fixture reference: same repository and tag, other host. */
const on = (reg: RunningRegistry, ref: string) => ref.replace(fx.registry, reg.host);

describe('ocisave save --format registry', () => {
  it('saves every reference so a second registry serves identical manifests and every blob', async () => {
    const bundle = join(work, 'all');
    const cache = join(work, 'cache-all');
    const r = await ocisave(['save', ...fx.references, '-o', bundle, '--cache', cache, '--platform', 'all', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = summaryOf(r);
    expect(summary.images).toBe(fx.references.length);
    expect(summary.blobs).toBe(Object.keys(fx.blobs).length);
    expect(summary.downloaded.blobs).toBe(Object.keys(fx.blobs).length);

    const reg = await serve(bundle);
    for (const ref of fx.references) {
      const want = fx.refs[ref]!;
      const raw = await skopeoInspectRaw(on(reg, ref));
      expect(sha(raw), ref).toBe(want.digest);
      for (const child of want.children) {
        const childRaw = await skopeoInspectRaw(`${reg.host}/${want.repository}@${child.digest}`);
        expect(sha(childRaw)).toBe(child.digest);
      }
      // skopeo verifies every blob's digest as it copies.
      await skopeoCopy(`docker://${on(reg, ref)}`, `oci:${join(work, 'pulled')}:${want.tag}`, ['--all']);
    }

    // A second run with the same cache downloads nothing.
    const again = await ocisave(['save', ...fx.references, '-o', join(work, 'all-again'), '--cache', cache, '--platform', 'all', '--json']);
    expect(again.code, again.stderr).toBe(0);
    const s2 = summaryOf(again);
    expect(s2.downloaded).toEqual({ blobs: 0, bytes: 0 });
    expect(s2.reused.blobs).toBe(Object.keys(fx.blobs).length);
  });

  it('reads an imageList, keeps the original index and only the platforms asked for', async () => {
    const multi = fx.references.find((r) => fx.refs[r]!.children.length >= 3)!;
    const single = fx.references.find((r) => fx.refs[r]!.kind === 'image' && r.split('/').length > 3)!;
    const list = join(work, 'imageList');
    await writeFile(list, `# bundle for site A\n\n${multi}   # multi-arch base\n  ${single}\n# end\n`);
    const bundle = join(work, 'subset');
    const r = await ocisave(['save', '-f', list, '-o', bundle, '--cache', join(work, 'cache-subset'), '--platform', 'linux/amd64,linux/arm64', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(2);

    const reg = await serve(bundle);
    const want = fx.refs[multi]!;
    expect(sha(await skopeoInspectRaw(on(reg, multi)))).toBe(want.digest);
    for (const child of want.children) {
      const ref = `${reg.host}/${want.repository}@${child.digest}`;
      if (child.platform === 'linux/amd64' || child.platform === 'linux/arm64/v8') {
        expect(sha(await skopeoInspectRaw(ref))).toBe(child.digest);
      } else {
        await expect(skopeoInspectRaw(ref)).rejects.toThrow();
      }
    }
    expect(sha(await skopeoInspectRaw(on(reg, single)))).toBe(fx.refs[single]!.digest);
  });

  it('pins by digest', async () => {
    const ref = fx.references.find((r) => fx.refs[r]!.kind === 'index')!;
    const want = fx.refs[ref]!;
    const pinned = `${fx.registry}/${want.repository}@${want.digest}`;
    const bundle = join(work, 'pinned');
    const r = await ocisave(['save', pinned, '-o', bundle, '--cache', join(work, 'cache-pin'), '--platform', 'all']);
    expect(r.code, r.stderr).toBe(0);
    const reg = await serve(bundle);
    expect(sha(await skopeoInspectRaw(`${reg.host}/${want.repository}@${want.digest}`))).toBe(want.digest);
  });

  it('fails with one clear line for an unknown tag, a bad reference and an unreachable registry, leaving no output', async () => {
    const cache = join(work, 'cache-err');
    const missing = `${fx.registry}/app/web:does-not-exist`;
    const out = join(work, 'never');
    const r1 = await ocisave(['save', missing, '-o', out, '--cache', cache]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toContain(`${fx.registry}/app/web:does-not-exist: not found`);
    expect(existsSync(out)).toBe(false);

    // A malformed reference on the command line is a usage error.
    const r2 = await ocisave(['save', 'UPPER/Case:tag', '-o', out, '--cache', cache]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/invalid reference "UPPER\/Case:tag"/);

    const port = await freePort();
    const r3 = await ocisave(['save', `127.0.0.1:${port}/x/y:1`, '-o', out, '--cache', cache]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain(`cannot reach 127.0.0.1:${port}`);
    expect(existsSync(out)).toBe(false);
  });

  it('--keep-going saves the good images, lists the failure and exits non-zero', async () => {
    const good = fx.references[0]!;
    const bad = `${fx.registry}/app/web:nope`;
    const bundle = join(work, 'keep-going');
    const r = await ocisave(['save', good, bad, '-o', bundle, '--cache', join(work, 'cache-kg'), '--keep-going', '--json']);
    expect(r.code).toBe(1);
    const s = summaryOf(r);
    expect(s.images).toBe(1);
    expect(s.failures.map((f: { input: string }) => f.input)).toEqual([bad]);
    const reg = await serve(bundle);
    expect(sha(await skopeoInspectRaw(on(reg, good)))).toBe(fx.refs[good]!.digest);
  });
});
