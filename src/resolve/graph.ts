// The resolved image graph: what `resolve` produces and every linker consumes.
// Manifest bytes are kept exactly as fetched so digests never change.
import type { Platform } from '../ref/platform.js';
import type { Descriptor } from '../ref/manifest.js';
import type { Reference } from '../ref/reference.js';
import { reportOf, type ErrorCode } from '../util/errors.js';

export type { Descriptor } from '../ref/manifest.js';

/** A single manifest: an image for one platform, or an artifact such as a Helm chart. */
export interface ManifestNode {
  kind: 'manifest';
  digest: string;
  mediaType: string;
  bytes: Buffer;
  /** From the parent index entry, when there is one. */
  platform?: Platform;
  config: Descriptor;
  layers: Descriptor[];
}

/** An index / manifest list. `children` holds the entries selected by --platform, resolved. */
export interface IndexNode {
  kind: 'index';
  digest: string;
  mediaType: string;
  bytes: Buffer;
  children: GraphNode[];
}

export type GraphNode = ManifestNode | IndexNode;

export interface ResolvedImage {
  /** What the user gave, for messages and names. */
  input: string;
  ref: Reference;
  root: GraphNode;
}

export interface BlobSource {
  registry: string;
  repository: string;
}

/** One config or layer blob, once however many images share it. */
export interface BlobNeed {
  digest: string;
  size: number;
  mediaType: string;
  sources: BlobSource[];
}

export interface Failure {
  input: string;
  /** One line that says what failed. */
  error: string;
  /** What to branch on (README, "Errors"): a local code, an errno, or the registry's distribution code. */
  code: ErrorCode;
  /** The registry's HTTP status, when its answer is the failure. */
  status?: number;
}

/** The failure of `input` that `err` describes. */
export function failureOf(input: string, err: unknown): Failure {
  return { input, ...reportOf(err) };
}

export interface ImageGraph {
  images: ResolvedImage[];
  blobs: Map<string, BlobNeed>;
  failures: Failure[];
}

/** Every node under (and including) `node`, parents before children. */
export function* walkNodes(node: GraphNode): Generator<GraphNode> {
  yield node;
  if (node.kind === 'index') for (const c of node.children) yield* walkNodes(c);
}

/** The single-platform manifests under `node`. */
export function leafManifests(node: GraphNode): ManifestNode[] {
  return [...walkNodes(node)].filter((n): n is ManifestNode => n.kind === 'manifest');
}

/** Config and layer descriptors of a manifest, config first. */
export function blobsOf(m: ManifestNode): Descriptor[] {
  return [m.config, ...m.layers];
}
