// `ocisave list-images PATH...`: what `save -f PATH` would save — image lists, Kubernetes YAML, Helm
// charts (directory or .tgz), sealer build contexts, skopeo sync YAML and lock files, one normalised
// reference a line (`--json`: with where each was found). No registry is asked, except to list the
// tags of a sync YAML's tag rules (`images: {repo: []}`, images-by-tag-regex, images-by-semver).
// Bad references are reported with their source and make the exit status 1; the good ones are
// still listed. What an input holds but is not followed (Kubefile RUN lines …) is a warning.
import { Command } from 'commander';
import type { InputRef } from '../inputs/index.js';
import { formatReference, parseReference } from '../ref/reference.js';
import { RegistryClient } from '../registry/client.js';
import { lookupCredential } from '../registry/credentials.js';
import { expandTagSets } from '../resolve/tags.js';
import { reportOf, type ErrorCode } from '../util/errors.js';
import { addContextOptions, collectInputs, type InputFlags } from './inputs.js';

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

interface ListFlags extends InputFlags {
  json?: boolean;
  plainHttp?: boolean;
}

/** References of every path, normalised and deduplicated (first seen first); tag rules listed on their registries. */
export async function listImages(paths: string[], flags: ListFlags = {}): Promise<ListImagesResult> {
  const collected = await collectInputs([], paths, flags);
  const found: InputRef[] = [...collected.found];
  const errors: ListImagesResult['errors'] = [];
  const warnings = [...collected.warnings];
  if (collected.tagSets.length) {
    const client = new RegistryClient({
      plainHttp: flags.plainHttp,
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
  return { images: [...byRef.values()], errors, warnings };
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

export function listImagesCommand(): Command {
  const cmd = new Command('list-images')
    .description('print the image references image lists, Kubernetes YAML, Helm charts, sealer build contexts, skopeo sync YAML and lock files name (what save -f would save)')
    .argument('<paths...>', 'image list, Kubernetes YAML, Helm chart (dir or .tgz), sealer build context (dir or Kubefile), skopeo sync YAML or lock file')
    .option('--json', 'JSON on stdout: each reference with its sources, and any errors and warnings')
    .option('--plain-http', 'talk plain HTTP to registries whose tags a sync YAML lists (loopback registries always use it)');
  addContextOptions(cmd);
  cmd.action(async (paths: string[], flags: ListFlags) => {
    const result = await listImages(paths, flags);
    if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else for (const image of result.images) process.stdout.write(`${image.reference}\n`);
    if (!flags.json) for (const w of result.warnings) process.stderr.write(`ocisave: warning: ${w}\n`);
    for (const e of result.errors) process.stderr.write(`ocisave: error: ${e.source}: ${e.error}\n`);
    if (result.errors.length) process.exitCode = 1;
  });
  return cmd;
}
