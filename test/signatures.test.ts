// Issue 5: --with-signatures (cosign tags and OCI referrers, for the top and per-platform manifests)
// and Helm charts, saved into a registry layout, served by a second real registry and pulled back
// byte-identical.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { skopeoCopy, skopeoInspectRaw, skopeoListTags } from './support/exec.js';
import { layoutServers, startRegistry, type RunningRegistry } from './support/registry.js';
import { MT, pushArtifact, pushBlob, pushCosignSignature, pushManifest, seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const sha = sha256;
const digestTag = (d: string) => d.replace(':', '-');

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
const layouts = layoutServers();

/** Tag → manifest digest of everything pushed about app/web, beyond the standard .sig of 1.0. */
const extra: Record<string, string> = {};
/** Manifest digest → the exact bytes pushed, for everything the test expects back. */
const pushed = new Map<string, string>();
let referrer: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-sigs-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { skipBig: true });
  const web10 = fx.refs[`${fx.registry}/app/web:1.0`]!;
  const web11 = fx.refs[`${fx.registry}/app/web:1.1`]!;

  // cosign sign --recursive: a signature for a per-platform manifest too.
  const arm = web10.children.find((c) => c.platform === 'linux/arm64/v8')!;
  const childSig = await pushCosignSignature(source.url, 'app/web', arm.digest);
  extra[childSig.tag] = childSig.pushed.digest;
  pushed.set(childSig.pushed.digest, childSig.pushed.bytes.toString());

  // cosign attest: an .att tag on the index.
  const att = await pushArtifact(source.url, 'app/web', `${digestTag(web10.digest)}.att`, {
    config: { bytes: Buffer.from('{}'), mediaType: MT.ociConfig },
    layers: [{ bytes: Buffer.from(JSON.stringify({ payloadType: 'application/vnd.in-toto+json', payload: 'e30=' })), mediaType: 'application/vnd.dsse.envelope.v1+json' }],
  });
  extra[`${digestTag(web10.digest)}.att`] = att.digest;
  pushed.set(att.digest, att.bytes.toString());

  // An OCI 1.1 referrer of 1.1, pushed the way clients do for registries without the referrers
  // API (distribution 2.8): the artifact by digest, and the index of referrers tagged sha256-<hex>.
  const empty = await pushBlob(source.url, 'app/web', Buffer.from('{}'), 'application/vnd.oci.empty.v1+json');
  const sbom = await pushBlob(source.url, 'app/web', Buffer.from('{"spdxVersion":"SPDX-2.3","name":"web"}'), 'application/spdx+json');
  const artifactType = 'application/spdx+json';
  const artifact = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      artifactType,
      config: empty,
      layers: [sbom],
      subject: { mediaType: web11.mediaType, digest: web11.digest, size: web11.size },
    }),
  );
  referrer = await pushManifest(source.url, 'app/web', sha(artifact), artifact, MT.ociManifest);
  const referrers = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [{ mediaType: MT.ociManifest, digest: referrer, size: artifact.length, artifactType }] }),
  );
  extra[digestTag(web11.digest)] = await pushManifest(source.url, 'app/web', digestTag(web11.digest), referrers, MT.ociIndex);
  pushed.set(extra[digestTag(web11.digest)]!, referrers.toString());
  for (const [digest, m] of Object.entries(fx.manifests)) pushed.set(digest, m.json);
});

afterAll(async () => {
  await Promise.all([source?.stop(), layouts.stopAll()]);
  await rm(work, { recursive: true, force: true });
});

const serve = layouts.serve;

describe('save --with-signatures', () => {
  it('saves cosign tags and referrers of the top and per-platform manifests; a second registry serves them byte-identical', async () => {
    const web = ['1.0', '1.1'].map((t) => `${fx.registry}/app/web:${t}`);
    const sigRef = fx.references.find((r) => fx.refs[r]!.kind === 'signature')!;
    const bundle = join(work, 'signed');
    const r = await ocisave(['save', ...web, '-o', bundle, '--cache', join(work, 'cache'), '--with-signatures', '--json']);
    expect(r.code, r.stderr).toBe(0);
    // The two images, the standard .sig, and the three pushed above.
    expect(summaryOf(r).images).toBe(2 + 1 + 3);

    const reg = await serve(bundle);
    const expected: Record<string, string> = { [fx.refs[sigRef]!.tag]: fx.refs[sigRef]!.digest, ...extra };
    expect((await skopeoListTags(`${reg.host}/app/web`)).sort()).toEqual(['1.0', '1.1', ...Object.keys(expected)].sort());
    for (const [tag, digest] of Object.entries(expected)) {
      const raw = await skopeoInspectRaw(`${reg.host}/app/web:${tag}`);
      expect(sha(raw), tag).toBe(digest);
      expect(raw).toBe(pushed.get(digest));
    }
    // The standard fixture's signature, pulled back whole (skopeo checks every blob's digest).
    await skopeoCopy(`${reg.host}/app/web:${fx.refs[sigRef]!.tag}`, `oci:${join(work, 'sig-pulled')}:sig`, ['--preserve-digests']);
    // The referrer itself, by digest, with its blobs.
    expect(sha(await skopeoInspectRaw(`${reg.host}/app/web@${referrer}`))).toBe(referrer);
    for (const blob of JSON.parse(await skopeoInspectRaw(`${reg.host}/app/web@${referrer}`)).layers as { digest: string }[]) {
      const res = await request(`${reg.url}/v2/app/web/blobs/${blob.digest}`);
      expect(sha(Buffer.from(await res.body.arrayBuffer()))).toBe(blob.digest);
    }
  });

  it('without the flag, no signature is saved', async () => {
    const bundle = join(work, 'unsigned');
    const r = await ocisave(['save', `${fx.registry}/app/web:1.0`, '-o', bundle, '--cache', join(work, 'cache'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(1);
    const reg = await serve(bundle);
    expect(await skopeoListTags(`${reg.host}/app/web`)).toEqual(['1.0']);
    const sigRef = fx.references.find((x) => fx.refs[x]!.kind === 'signature')!;
    await expect(skopeoInspectRaw(`${reg.host}/app/web:${fx.refs[sigRef]!.tag}`)).rejects.toThrow();
  });
});

describe('Helm charts', () => {
  it('are saved by digest like images and served back byte-identical', async () => {
    const charts = fx.references.filter((r) => fx.refs[r]!.kind === 'helm');
    expect(charts.map((c) => fx.refs[c]!.repository)).toContain('charts/mysql');
    const bundle = join(work, 'charts');
    const r = await ocisave(['save', ...charts, '-o', bundle, '--cache', join(work, 'cache'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(charts.length);
    const reg = await serve(bundle);
    for (const chart of charts) {
      const want = fx.refs[chart]!;
      const raw = await skopeoInspectRaw(chart.replace(fx.registry, reg.host));
      expect(raw).toBe(fx.manifests[want.digest]!.json);
      const m = JSON.parse(raw) as { config: { digest: string; mediaType: string }; layers: { digest: string; mediaType: string }[] };
      expect(m.config.mediaType).toBe(MT.helmConfig);
      expect(m.layers[0]!.mediaType).toBe(MT.helmChart);
      // What `helm pull oci://…` downloads: the chart .tgz and its config, byte for byte.
      for (const d of [m.config, ...m.layers]) {
        const res = await request(`${reg.url}/v2/${want.repository}/blobs/${d.digest}`);
        expect(res.statusCode).toBe(200);
        expect(sha(Buffer.from(await res.body.arrayBuffer()))).toBe(d.digest);
      }
    }
    // Pinned by digest works the same way.
    const mysql = fx.refs[charts.find((c) => c.includes('charts/mysql'))!]!;
    const pinned = join(work, 'chart-pinned');
    const p = await ocisave(['save', `${fx.registry}/charts/mysql@${mysql.digest}`, '-o', pinned, '--cache', join(work, 'cache')]);
    expect(p.code, p.stderr).toBe(0);
    const reg2 = await serve(pinned);
    expect(sha(await skopeoInspectRaw(`${reg2.host}/charts/mysql@${mysql.digest}`))).toBe(mysql.digest);
  });
});
