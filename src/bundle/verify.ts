// `ocisave verify`: check a bundle offline. Every blob is re-hashed against its name, and every
// reference is followed: links → blob bytes, manifests → their blobs and child manifests (and,
// in a registry layout, the repository links a registry needs to serve them), tags → revisions.
// An index entry that is absent altogether is a note, not a problem: a bundle saved for some
// platforms keeps the whole index. With `since`, blobs a delta bundle leaves to its base count as present.
// The bundle is opened and indexed once, by openBundle as push and serve open it; verify adds the
// hashing and cross-checks. Files are read as the bundle readers read them (src/fs/contained.ts):
// a link is reported, never followed.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { hashStream } from '../hash/hasher.js';
import { mapLimit } from '../util/limit.js';
import { hashRegular, isUnsafePath, lstatInside, lstatInsideSync, readRegular } from '../fs/contained.js';
import { REGISTRY_ROOT } from '../link/registry.js';
import { LegacyDockerBundle } from './docker.js';
import { openBundle } from './index.js';
import { blobMember, OciBundle } from './oci.js';
import { blobDataName, findRegistryRoot, RegistryBundle, subdirsInside } from './registry.js';
import type { TarStore } from './store.js';
import {
  BundleError,
  manifestMediaType,
  manifestRefs,
  MAX_MANIFEST_BYTES,
  type BundleFormat,
  type BundleProblem,
  type BundleRepository,
} from './types.js';

export interface VerifyOptions {
  /** A base bundle (registry layout) whose blobs a delta bundle may lack. */
  since?: string;
  /** Files hashed at once (default 4). */
  jobs?: number;
}

export interface VerifyReport {
  bundle: string;
  format: BundleFormat;
  ok: boolean;
  repositories: number;
  tags: number;
  manifests: number;
  blobs: { checked: number; bytes: number };
  problems: BundleProblem[];
  notes: string[];
  seconds: number;
}

function baseChecker(since: string | undefined): (digest: string) => boolean {
  if (!since) return () => false;
  const root = findRegistryRoot(since);
  if (!root) throw new BundleError(`--since ${since}: not a registry layout (no ${REGISTRY_ROOT} inside)`);
  return (digest) => {
    try {
      return !!lstatInsideSync(root, blobDataName(digest))?.isFile();
    } catch {
      return false;
    }
  };
}

export async function verifyBundle(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const bundle = await openBundle(path);
  let report: Omit<VerifyReport, 'ok' | 'seconds' | 'bundle'>;
  try {
    if (bundle instanceof RegistryBundle) report = await verifyRegistry(bundle, opts);
    else if (bundle.format === 'docker') report = await verifyDocker(path, bundle as OciBundle | LegacyDockerBundle, opts);
    else report = await verifyOci(bundle as OciBundle, 'oci', opts);
  } finally {
    await bundle.close();
  }
  return { bundle: path, ...report, ok: report.problems.length === 0, seconds: (Date.now() - started) / 1000 };
}

// --- registry layout ----------------------------------------------------------------

async function verifyRegistry(bundle: RegistryBundle, opts: VerifyOptions) {
  const scan = { root: bundle.path, repositories: bundle.repositories, problems: bundle.problems };
  const problems = [...scan.problems];
  const notes: string[] = [];
  const inBase = baseChecker(opts.since);
  const blobsRel = `${REGISTRY_ROOT}/blobs/sha256`;
  const blobsDir = join(scan.root, blobsRel);

  // Every blob's bytes against its name; data that is a link is reported, never read.
  const files: { hex: string; file: string; rel: string }[] = [];
  for (const prefix of await subdirsInside(scan.root, blobsRel, problems)) {
    for (const hex of await subdirsInside(scan.root, `${blobsRel}/${prefix}`, problems)) {
      const rel = `${blobsRel}/${prefix}/${hex}/data`;
      const file = join(scan.root, rel);
      if (!/^[a-f0-9]{64}$/.test(hex) || hex.slice(0, 2) !== prefix) {
        problems.push({ kind: 'bad-layout', path: join(blobsDir, prefix, hex), message: `${join(blobsDir, prefix, hex)}: not a blob directory name` });
        continue;
      }
      const st = await lstatInside(scan.root, rel).catch(() => undefined);
      if (st?.isFile()) files.push({ hex, file, rel });
      else if (st) problems.push({ kind: 'bad-layout', digest: `sha256:${hex}`, path: file, message: `${file} is a symbolic link or special file; links inside a bundle are never followed` });
    }
  }
  const sizes = new Map<string, number>();
  const corrupt = new Set<string>();
  let bytes = 0;
  await mapLimit(files, opts.jobs ?? 4, async ({ hex, file, rel }) => {
    const digest = `sha256:${hex}`;
    let got;
    try {
      got = await hashRegular(scan.root, rel);
    } catch (err) {
      if (!isUnsafePath(err)) throw err;
      problems.push({ kind: 'bad-layout', digest, path: file, message: err.message });
      return;
    }
    bytes += got.size;
    sizes.set(digest, got.size);
    if (got.digest !== digest) {
      corrupt.add(digest);
      problems.push({ kind: 'corrupt-blob', digest, path: file, message: `${file}: content hashes to ${got.digest}, not ${digest}` });
    }
  });
  const present = (d: string) => sizes.has(d) || inBase(d);
  const linkDir = (repo: string, kind: '_layers' | 'revisions', d: string) =>
    join(scan.root, REGISTRY_ROOT, 'repositories', repo, ...(kind === '_layers' ? ['_layers'] : ['_manifests', 'revisions']), 'sha256', d.slice(7), 'link');

  let manifests = 0;
  for (const repo of scan.repositories.values()) {
    const r = repo.name;
    for (const d of repo.blobs) {
      if (!present(d)) problems.push({ kind: 'missing-blob', repository: r, digest: d, path: linkDir(r, '_layers', d), message: `${r}: layer link ${d} points at a blob that is not in the bundle` });
    }
    for (const d of repo.manifests) {
      manifests++;
      if (!present(d)) {
        problems.push({ kind: 'missing-blob', repository: r, digest: d, path: linkDir(r, 'revisions', d), message: `${r}: manifest revision ${d} has no bytes in the bundle` });
        continue;
      }
      if (!sizes.has(d) || corrupt.has(d)) continue; // in the base, or already reported
      const file = join(scan.root, blobDataName(d));
      if (sizes.get(d)! > MAX_MANIFEST_BYTES) {
        problems.push({ kind: 'bad-manifest', repository: r, digest: d, path: file, message: `${r}: manifest ${d} is larger than 4 MiB` });
        continue;
      }
      let refs;
      try {
        const raw = await readRegular(scan.root, blobDataName(d), MAX_MANIFEST_BYTES);
        refs = manifestRefs(manifestMediaType(raw, undefined, `manifest ${d}`), raw, `${r}: manifest ${d}`);
      } catch (err) {
        problems.push({ kind: 'bad-manifest', repository: r, digest: d, path: file, message: (err as Error).message });
        continue;
      }
      for (const c of refs.manifests) {
        if (repo.manifests.has(c.digest)) continue;
        if (present(c.digest)) {
          problems.push({ kind: 'missing-link', repository: r, digest: c.digest, path: linkDir(r, 'revisions', c.digest), message: `${r}: index ${d} lists ${c.digest}, whose bytes are in the bundle but which has no revision link in the repository` });
        } else {
          notes.push(`${r}: index ${d} entry ${c.digest} is not in the bundle (saved for some platforms only?)`);
        }
      }
      for (const b of refs.blobs) {
        if (!repo.blobs.has(b.digest)) {
          problems.push({ kind: 'missing-link', repository: r, digest: b.digest, path: linkDir(r, '_layers', b.digest), message: `${r}: manifest ${d} references ${b.digest}, which has no layer link in the repository (a registry will not serve it)` });
        }
        if (!present(b.digest)) {
          if (!repo.blobs.has(b.digest)) problems.push({ kind: 'missing-blob', repository: r, digest: b.digest, message: `${r}: manifest ${d} references ${b.digest}, which is not in the bundle` });
        } else if (sizes.has(b.digest) && sizes.get(b.digest) !== b.size && !corrupt.has(b.digest)) {
          problems.push({ kind: 'corrupt-blob', repository: r, digest: b.digest, message: `${r}: manifest ${d} says ${b.digest} is ${b.size} bytes; the bundle holds ${sizes.get(b.digest)}` });
        }
      }
    }
    for (const [tag, d] of repo.tags) {
      if (!repo.manifests.has(d)) {
        problems.push({ kind: 'missing-link', repository: r, digest: d, path: linkDir(r, 'revisions', d), message: `${r}:${tag} points at ${d}, which has no revision link in the repository` });
      }
      if (!present(d)) problems.push({ kind: 'missing-manifest', repository: r, digest: d, message: `${r}:${tag} points at ${d}, which is not in the bundle` });
    }
  }
  return {
    format: 'registry' as const,
    repositories: scan.repositories.size,
    tags: count(scan.repositories, (r) => r.tags.size),
    manifests,
    blobs: { checked: files.length, bytes },
    problems,
    notes,
  };
}

function count(repos: Map<string, BundleRepository>, f: (r: BundleRepository) => number): number {
  let n = 0;
  for (const r of repos.values()) n += f(r);
  return n;
}

// --- OCI layout (directory or archive) --------------------------------------------------

async function verifyOci(bundle: OciBundle, format: BundleFormat, opts: VerifyOptions) {
  const { store, scan } = bundle;
  const problems = [...scan.problems];
  const inBase = baseChecker(opts.since);
  const names = (await store.list('blobs/sha256/')).filter((n) => /^blobs\/sha256\/[a-f0-9]{64}$/.test(n));
  for (const name of [...(await store.strays('')), ...(await store.strays('blobs/')), ...(await store.strays('blobs/sha256/'))]) {
    problems.push({ kind: 'bad-layout', path: name, message: `${store.location}: ${name} is a symbolic link or special file; links inside a bundle are never followed` });
  }
  const sizes = new Map<string, number>();
  let bytes = 0;
  await mapLimit(names, opts.jobs ?? 4, async (name) => {
    const digest = `sha256:${name.slice('blobs/sha256/'.length)}`;
    const got = await hashStream(store.stream(name));
    bytes += got.size;
    sizes.set(digest, got.size);
    if (got.digest !== digest) problems.push({ kind: 'corrupt-blob', digest, path: name, message: `${store.location}: ${name} hashes to ${got.digest}` });
  });
  const seen = new Set<string>();
  for (const repo of scan.repositories.values()) {
    for (const d of repo.manifests) {
      const m = scan.manifests.get(d);
      if (!m || seen.has(d)) continue;
      seen.add(d);
      const refs = manifestRefs(m.mediaType, m.bytes, `manifest ${d}`);
      for (const c of refs.manifests) {
        if (sizes.has(c.digest) && sizes.get(c.digest) !== c.size) {
          problems.push({ kind: 'corrupt-blob', digest: c.digest, message: `index ${d} says ${c.digest} is ${c.size} bytes; ${blobMember(c.digest)} holds ${sizes.get(c.digest)}` });
        }
      }
      for (const b of refs.blobs) {
        const size = sizes.get(b.digest);
        if (size === undefined && !inBase(b.digest)) {
          problems.push({ kind: 'missing-blob', repository: repo.name, digest: b.digest, path: blobMember(b.digest), message: `${repo.name}: manifest ${d} references ${b.digest}, which is not under blobs/` });
        } else if (size !== undefined && size !== b.size) {
          problems.push({ kind: 'corrupt-blob', digest: b.digest, message: `manifest ${d} says ${b.digest} is ${b.size} bytes; ${blobMember(b.digest)} holds ${size}` });
        }
      }
    }
  }
  return {
    format,
    repositories: scan.repositories.size,
    tags: count(scan.repositories, (r) => r.tags.size),
    manifests: scan.manifests.size,
    blobs: { checked: names.length, bytes },
    problems,
    notes: scan.absentChildren.map((c) => `index entry ${c} is not in the bundle (saved for some platforms only?)`),
  };
}

// --- docker-save tar --------------------------------------------------------------------

interface ManifestItem {
  Config?: string;
  Layers?: string[];
}

/** What docker load checks: each layer, decompressed, hashes to the config's rootfs.diff_ids entry. */
async function verifyDocker(path: string, bundle: OciBundle | LegacyDockerBundle, opts: VerifyOptions) {
  const tar = bundle.store as TarStore;
  const base =
    bundle instanceof LegacyDockerBundle
      ? {
          format: 'docker' as const,
          repositories: bundle.repositories.size,
          tags: count(bundle.repositories, (r) => r.tags.size),
          manifests: count(bundle.repositories, (r) => r.manifests.size),
          blobs: { checked: 0, bytes: 0 },
          problems: [...bundle.problems],
          notes: [] as string[],
        }
      : { ...(await verifyOci(bundle, 'docker', opts)), format: 'docker' as const };
  let items: ManifestItem[] = [];
  try {
    items = JSON.parse((await tar.read('manifest.json', MAX_MANIFEST_BYTES)).toString('utf8')) as ManifestItem[];
  } catch (err) {
    base.problems.push({ kind: 'bad-layout', path: 'manifest.json', message: `${path}: manifest.json: ${(err as Error).message}` });
  }
  const checked = new Set<string>();
  for (const item of Array.isArray(items) ? items : []) {
    if (!item.Config || (await tar.size(item.Config)) === undefined) {
      base.problems.push({ kind: 'missing-blob', path: item.Config, message: `${path}: manifest.json names config ${item.Config}, which is not in the archive` });
      continue;
    }
    let diffIds: string[] = [];
    try {
      const config = JSON.parse((await tar.read(item.Config, MAX_MANIFEST_BYTES)).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
      diffIds = config.rootfs?.diff_ids ?? [];
    } catch {
      base.problems.push({ kind: 'bad-manifest', path: item.Config, message: `${path}: config ${item.Config} is not JSON` });
      continue;
    }
    const layers = item.Layers ?? [];
    if (layers.length !== diffIds.length) {
      base.problems.push({ kind: 'bad-layout', path: item.Config, message: `${path}: ${item.Config} lists ${diffIds.length} diff_ids for ${layers.length} layers` });
    }
    await mapLimit(layers, opts.jobs ?? 4, async (file, i) => {
      if ((await tar.size(file)) === undefined) {
        base.problems.push({ kind: 'missing-blob', path: file, message: `${path}: manifest.json names layer ${file}, which is not in the archive` });
        return;
      }
      if (checked.has(file)) return;
      checked.add(file);
      const stream = tar.stream(file);
      const first = await peek(tar, file);
      let source: Readable = stream;
      if (first[0] === 0x1f && first[1] === 0x8b) {
        const gunzip = createGunzip();
        stream.on('error', (e) => gunzip.destroy(e));
        source = stream.pipe(gunzip);
      }
      const got = await hashStream(source);
      base.blobs.checked++;
      base.blobs.bytes += (await tar.size(file)) ?? 0;
      if (diffIds[i] && got.digest !== diffIds[i]) {
        base.problems.push({ kind: 'corrupt-blob', path: file, digest: diffIds[i], message: `${path}: layer ${file} unpacks to ${got.digest}, but the config's diff_id is ${diffIds[i]}` });
      }
    }).catch((err: Error) => {
      base.problems.push({ kind: 'corrupt-blob', path: item.Config, message: `${path}: a layer of ${item.Config} does not decompress: ${err.message}` });
    });
  }
  return base;
}

async function peek(tar: TarStore, name: string): Promise<Buffer> {
  for await (const chunk of tar.stream(name, 0, 1)) return chunk as Buffer;
  return Buffer.alloc(0);
}
