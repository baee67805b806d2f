// Workloads and contender inputs derived from a seeded fixture set: the image list, the unique-blob
// list for the floor, skopeo sync's YAML source, the skopeo copy script, and the WAN workload.
import { writeFile } from 'node:fs/promises';
import { stringify } from 'yaml';
import { MT, pushBlobStream, pushImage, type ImageLayer, type PushTarget } from '../test/fixtures/push.js';
import { randomLayerStream } from '../test/fixtures/layer.js';
import { seedFleet } from '../test/fixtures/fleet.js';
import type { FixtureSet } from '../test/fixtures/model.js';

/** `ref` with its registry host replaced (e.g. to go through a proxy). */
export function rehost(ref: string, from: string, to: string): string {
  return ref.startsWith(`${from}/`) ? `${to}${ref.slice(from.length)}` : ref;
}

export async function writeImageList(file: string, refs: readonly string[]): Promise<void> {
  await writeFile(file, `${refs.join('\n')}\n`);
}

/** Every unique config/layer blob once, with a repository that serves it. */
export function uniqueBlobs(set: FixtureSet, baseUrl = set.url): { url: string; size: number }[] {
  const repoOf = new Map<string, string>();
  for (const ref of Object.values(set.refs)) for (const d of ref.blobs) if (!repoOf.has(d)) repoOf.set(d, ref.repository);
  return Object.entries(set.blobs).map(([digest, b]) => {
    const repo = repoOf.get(digest);
    if (!repo) throw new Error(`blob ${digest} is referenced by no tag of the fixture set`);
    return { url: `${baseUrl}/v2/${repo}/blobs/${digest}`, size: b.size };
  });
}

/**
 * Every GET a cold save of the set makes: each tag's manifest, each further manifest once by digest
 * (the images of an index; a save keeps manifests by digest), each unique blob once. The floor of
 * a save bound by requests (bench `curlsave`): the blobs alone leave out ~2,160 requests of the
 * wide fleet's save (its 1,287 tags and ~870 manifests by digest).
 */
export function saveRequests(set: FixtureSet, baseUrl = set.url): { url: string; size: number }[] {
  const out: { url: string; size: number }[] = [];
  const byDigest = new Set<string>();
  const refs = set.references.map((r) => set.refs[r]!);
  for (const ref of refs) {
    out.push({ url: `${baseUrl}/v2/${ref.repository}/manifests/${ref.tag}`, size: ref.size });
    byDigest.add(ref.digest);
  }
  for (const ref of refs) {
    for (const d of ref.manifests) {
      if (byDigest.has(d)) continue;
      byDigest.add(d);
      out.push({ url: `${baseUrl}/v2/${ref.repository}/manifests/${d}`, size: set.manifests[d]!.size });
    }
  }
  return [...out, ...uniqueBlobs(set, baseUrl)];
}

/** skopeo sync `--src yaml` source: every tag of the set, one registry entry, TLS off. */
export function syncYaml(set: FixtureSet, refs: readonly string[] = set.references): string {
  const images: Record<string, string[]> = {};
  for (const ref of refs) {
    const r = set.refs[ref];
    if (!r) throw new Error(`unknown reference ${ref}`);
    (images[r.repository] ??= []).push(r.tag);
  }
  return stringify({ [set.registry]: { 'tls-verify': false, images } });
}

/** A shell script copying every reference, one `skopeo copy --all` after another, into one OCI layout. */
export function copyScript(set: FixtureSet, layoutDir: string, refs: readonly string[] = set.references): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = ['#!/bin/sh', 'set -e'];
  for (const ref of refs) {
    const name = ref.slice(set.registry.length + 1);
    lines.push(`skopeo copy --all --quiet --src-tls-verify=false --src-no-creds ${q(`docker://${ref}`)} ${q(`oci:${layoutDir}:${name}`)}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface WanWorkload {
  set: FixtureSet;
  /** Sizes of the big layers (the ones --segment-size splits). */
  bigBlobs: number[];
}

/**
 * A few big blobs plus a small fleet: `wan/big:1.0` holds two incompressible layers of `bigBytes`
 * each (slightly different sizes), and a small fleet adds tens of small blobs, where the per-request
 * latency shows.
 */
export async function seedWan(t: PushTarget, bigBytes: number[], smallBytes: number): Promise<WanWorkload> {
  const set = await seedFleet(t, { repos: 4, tagsPerRepo: 3, uniqueBytes: smallBytes, bases: 1, charts: 0, seed: 'wan', maxLayerBytes: 4 << 20 });
  const layers: ImageLayer[] = [];
  for (const [i, bytes] of bigBytes.entries()) {
    const { stream, result } = randomLayerStream({ seed: `wan-big-${i}`, bytes, path: `data/big${i}.bin` });
    const d = await pushBlobStream(t, 'wan/big', stream, MT.dockerLayer);
    layers.push({ digest: d.digest, size: d.size, diffId: (await result).diffId, repo: 'wan/big' });
  }
  const m = await pushImage(t, 'wan/big', '1.0', { format: 'docker', layers });
  const ref = `${set.registry}/wan/big:1.0`;
  const blobs = [m.config!, ...m.layers];
  for (const b of blobs) {
    if (!set.blobs[b.digest]) {
      set.blobs[b.digest] = { size: b.size, mediaTypes: [b.mediaType] };
      set.totalBlobBytes += b.size;
    }
  }
  set.references.push(ref);
  set.refs[ref] = {
    ref,
    registry: set.registry,
    repository: 'wan/big',
    tag: '1.0',
    digest: m.digest,
    mediaType: m.mediaType,
    size: m.size,
    kind: 'image',
    children: [],
    manifests: [m.digest],
    blobs: blobs.map((b) => b.digest).sort(),
    blobBytes: blobs.reduce((n, b) => n + b.size, 0),
    config: m.config!.digest,
    layers: m.layers.map((l) => l.digest),
  };
  return { set, bigBlobs: m.layers.map((l) => l.size) };
}
