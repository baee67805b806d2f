// What a manifest points with, and what kind of manifest some bytes are: one definition for the
// registry client, the resolver, the linkers and the bundle readers (issue 14: there were two of each).
import { MT } from '../util/mediatypes.js';
import type { Platform } from './platform.js';

const SCHEMA1_TYPES: string[] = [MT.dockerSchema1, MT.dockerSchema1Signed];

/** An OCI / docker descriptor; the optional fields appear in index entries and artifact manifests. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  artifactType?: string;
}

/** Manifest bytes that are not JSON, or a docker schema 1 manifest (deprecated since 2017). */
export class ManifestFormatError extends Error {
  constructor(
    readonly reason: 'not-json' | 'schema1',
    message: string,
  ) {
    super(message);
    this.name = 'ManifestFormatError';
  }
}

/**
 * The media type of manifest bytes: their own field, else `hint` (a descriptor's media type, or a
 * Content-Type, whose generic JSON types say nothing), else by shape, since OCI allows omitting it.
 */
export function manifestMediaType(bytes: Buffer, hint?: string, what = 'manifest'): string {
  let parsed: { mediaType?: unknown; schemaVersion?: unknown; manifests?: unknown };
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    parsed = undefined as never;
  }
  if (!parsed || typeof parsed !== 'object') throw new ManifestFormatError('not-json', `${what} is not a JSON manifest`);
  const type = hint?.split(';')[0]?.trim();
  if (parsed.schemaVersion === 1 || (type && SCHEMA1_TYPES.includes(type)) || (typeof parsed.mediaType === 'string' && SCHEMA1_TYPES.includes(parsed.mediaType))) {
    throw new ManifestFormatError('schema1', `${what}: docker schema 1 manifests are not supported (deprecated since 2017); re-push the image with a current client`);
  }
  if (typeof parsed.mediaType === 'string' && parsed.mediaType) return parsed.mediaType;
  if (type && type !== 'application/json' && type !== 'text/plain') return type;
  return Array.isArray(parsed.manifests) ? MT.ociIndex : MT.ociManifest;
}
