// What every bundle reader gives push, serve and verify: repositories with their tags, the
// manifests and blobs each holds, and byte access to blobs by digest. Manifest bytes are handed
// out exactly as stored, so digests never change on the way out.
import type { Readable } from 'node:stream';
import { isIndexType } from '../util/mediatypes.js';
import { OcisaveError } from '../util/errors.js';
import { manifestMediaType as typeOf, ManifestFormatError, type Descriptor } from '../ref/manifest.js';

export type BundleFormat = 'registry' | 'oci' | 'docker';

export interface BundleRepository {
  /** Repository path without a registry host, e.g. `app/web` or `library/alpine`. */
  name: string;
  /** The host its images were named with, when the bundle says (OCI and docker names are full references; a registry layout names none). */
  registry?: string;
  /** tag → digest of the manifest or index it names. */
  tags: Map<string, string>;
  /** Every manifest and index the repository holds (registry: revisions; others: reachable from its roots). */
  manifests: Set<string>;
  /** Config and layer blobs the repository holds (registry: `_layers` links; others: reachable). */
  blobs: Set<string>;
}

export interface ReadOptions {
  /** Bytes per read from disk, which is also what the stream buffers ahead (default READ_CHUNK_BYTES). */
  chunkBytes?: number;
}

/** 1 MiB reads for push and verify, which drain as fast as they read. */
export const READ_CHUNK_BYTES = 1 << 20;

export interface StoredManifest {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

export interface Bundle {
  readonly format: BundleFormat;
  readonly path: string;
  readonly repositories: Map<string, BundleRepository>;
  /** The blob's size, or undefined when the bundle does not hold its bytes (e.g. a delta bundle). */
  blobSize(digest: string): Promise<number | undefined>;
  /** Bytes [start, end] (inclusive) of a blob, streamed from disk. */
  openBlob(digest: string, start?: number, end?: number, opts?: ReadOptions): Readable;
  /** A manifest or index held by the bundle, or undefined when its bytes are absent. */
  manifest(digest: string): Promise<StoredManifest | undefined>;
  close(): Promise<void>;
}

export type { Descriptor } from '../ref/manifest.js';

/** What a manifest or index points at. */
export interface ManifestRefs {
  /** Child manifests of an index. */
  manifests: Descriptor[];
  /** Config and layers (and an OCI artifact manifest's blobs). */
  blobs: Descriptor[];
}

export type ProblemKind =
  | 'corrupt-blob' // bytes do not hash to the name (or size differs from a descriptor)
  | 'missing-blob' // a link or manifest names a blob whose bytes are absent
  | 'missing-link' // a manifest references something its repository has no link for
  | 'bad-link' // a link file that is unreadable, not a digest, or disagrees with its path
  | 'missing-manifest' // a tag or index names a manifest that is absent
  | 'bad-manifest' // manifest bytes that do not parse
  | 'bad-layout'; // the bundle's own files (index.json, manifest.json, oci-layout) are wrong

export interface BundleProblem {
  kind: ProblemKind;
  message: string;
  path?: string;
  digest?: string;
  repository?: string;
}

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isSha256Digest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** A bundle that cannot be read or used as it is (INVALID_INPUT), or that is damaged (CORRUPT). */
export class BundleError extends OcisaveError {
  constructor(message: string, code: 'INVALID_INPUT' | 'CORRUPT' = 'INVALID_INPUT') {
    super(code, message);
    this.name = 'BundleError';
  }
}

interface ParsedManifest {
  mediaType?: string;
  schemaVersion?: number;
  manifests?: unknown;
  config?: unknown;
  layers?: unknown;
  blobs?: unknown;
}

function parse(bytes: Buffer, what: string): ParsedManifest {
  try {
    const v = JSON.parse(bytes.toString('utf8'));
    if (v && typeof v === 'object') return v as ParsedManifest;
  } catch {
    // reported below
  }
  throw new BundleError(`${what} is not a JSON manifest`);
}

/** src/ref/manifest.ts's manifestMediaType, failing as a BundleError (a bundle's problem, not the reader's). */
export function manifestMediaType(bytes: Buffer, hint?: string, what = 'manifest'): string {
  try {
    return typeOf(bytes, hint, what);
  } catch (err) {
    if (err instanceof ManifestFormatError) throw new BundleError(err.message);
    throw err;
  }
}

function descriptors(v: unknown, what: string): Descriptor[] {
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  return list.map((d) => {
    const o = d as Partial<Descriptor>;
    if (!o || typeof o.digest !== 'string' || !isSha256Digest(o.digest) || typeof o.size !== 'number') {
      throw new BundleError(`${what} has a descriptor without a sha256 digest and a size`);
    }
    return { mediaType: typeof o.mediaType === 'string' ? o.mediaType : '', digest: o.digest, size: o.size };
  });
}

/** Children of an index, or config + layers of a manifest (config first). */
export function manifestRefs(mediaType: string, bytes: Buffer, what = 'manifest'): ManifestRefs {
  const m = parse(bytes, what);
  if (m.schemaVersion === 1) throw new BundleError(`${what} is a docker schema 1 manifest, which is not supported`);
  if (isIndexType(mediaType) || (Array.isArray(m.manifests) && !m.layers)) {
    return { manifests: descriptors(m.manifests, what), blobs: [] };
  }
  return { manifests: [], blobs: [...descriptors(m.config, what), ...descriptors(m.layers, what), ...descriptors(m.blobs, what)] };
}

export function emptyRepository(name: string): BundleRepository {
  return { name, tags: new Map(), manifests: new Set(), blobs: new Set() };
}

/**
 * A repository name for a bundle whose images carry no name of their own (an OCI layout whose
 * index.json entries have only a tag): the bundle's file name, made a valid repository component.
 */
export function fallbackRepositoryName(path: string): string {
  const base = path.replace(/[/\\]+$/, '').split(/[/\\]/).pop() ?? 'bundle';
  const name = base
    .replace(/\.(tar|tgz|tar\.gz|oci)$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '');
  return name || 'bundle';
}
