// listImages(): the references `save -f PATH` would save, each with where it was found. No registry
// is asked, except to list the tags of a sync YAML's tag rules.
import type { InputRef } from '../inputs/index.js';
import { formatReference, parseReference } from '../ref/reference.js';
import { RegistryClient } from '../registry/client.js';
import { lookupCredential } from '../registry/credentials.js';
import { expandTagSets } from '../resolve/tags.js';
import { reportOf, type ErrorCode } from '../util/errors.js';
import { collectInputs, type InputOptions } from './inputs.js';
import { SCHEMAS, versioned } from './schema.js';

export interface ListedImage {
  /** Normalised: `registry/repository[:tag][@digest]`. */
  reference: string;
  /** Every place it was found, as written there. */
  sources: { input: string; source: string }[];
}

export interface ListImagesResult {
  images: ListedImage[];
  errors: { input: string; source: string; error: string; code: ErrorCode; status?: number }[];
  warnings: string[];
}

export interface ListImagesRequest extends Pick<InputOptions, 'buildArg' | 'includeBase'> {
  /** Image lists, Kubernetes YAML, Helm charts, sealer build contexts, skopeo sync YAML, lock files. */
  paths: string[];
  /** Plain HTTP to registries whose tags a sync YAML lists. */
  plainHttp?: boolean;
}

export type ListImagesVersioned = { schema: typeof SCHEMAS.listImages } & ListImagesResult;

/** References of every path, normalised and deduplicated (first seen first); tag rules listed on their registries. */
export async function listImages(r: ListImagesRequest): Promise<ListImagesVersioned> {
  const collected = await collectInputs([], r.paths, r);
  const found: InputRef[] = [...collected.found];
  const errors: ListImagesResult['errors'] = [];
  const warnings = [...collected.warnings];
  if (collected.tagSets.length) {
    const client = new RegistryClient({
      plainHttp: r.plainHttp,
      credentials: (registry) => lookupCredential(registry, { overrides: collected.credentials }),
    });
    try {
      const expanded = await expandTagSets(client, collected.tagSets);
      const sourceOf = new Map(collected.tagSets.map((t) => [t.repository, t.source]));
      for (const ref of expanded.references) found.push({ ref, source: tagSetSource(ref, sourceOf) });
      for (const f of expanded.failures) errors.push({ ...f, source: f.input });
      warnings.push(...expanded.warnings);
    } finally {
      await client.close();
    }
  }
  const byRef = new Map<string, ListedImage>();
  for (const { ref, source } of found) {
    let reference: string;
    try {
      reference = formatReference(parseReference(ref));
    } catch (err) {
      errors.push({ input: ref, source, ...reportOf(err) });
      continue;
    }
    let entry = byRef.get(reference);
    if (!entry) byRef.set(reference, (entry = { reference, sources: [] }));
    entry.sources.push({ input: ref, source });
  }
  return versioned(SCHEMAS.listImages, { images: [...byRef.values()], errors, warnings });
}

/** The rule a listed tag came from, found by its normalised repository. */
function tagSetSource(ref: string, sourceOf: Map<string, string>): string {
  const r = parseReference(ref);
  for (const [repository, source] of sourceOf) {
    const t = parseReference(repository);
    if (t.registry === r.registry && t.repository === r.repository) return source;
  }
  return 'tag set';
}

