// One resolved image as results name it: what was asked, where it lives, its digest and platforms.
import { formatPlatform } from '../ref/platform.js';
import { formatReference } from '../ref/reference.js';
import { leafManifests, type ResolvedImage } from './graph.js';

export interface ImageRow {
  /** The input as given. */
  input: string;
  /** `registry/repository@digest` */
  reference: string;
  tag?: string;
  digest: string;
  mediaType: string;
  /** os/arch[/variant] of each platform kept; 'any' for a manifest without one (an artifact). */
  platforms: string[];
}

export function describeImage(image: ResolvedImage): ImageRow {
  return {
    input: image.input,
    reference: formatReference({ registry: image.ref.registry, repository: image.ref.repository, digest: image.root.digest }),
    ...(image.ref.tag ? { tag: image.ref.tag } : {}),
    digest: image.root.digest,
    mediaType: image.root.mediaType,
    platforms: leafManifests(image.root).map((m) => (m.platform ? formatPlatform(m.platform) : 'any')),
  };
}
