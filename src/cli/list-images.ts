// `ocisave list-images PATH...`: what `save -f PATH` would save, without asking any registry —
// image lists, Kubernetes YAML, Helm charts (directory or .tgz) and lock files, one normalised
// reference a line (`--json`: with where each was found). Bad references are reported with their
// source and make the exit status 1; the good ones are still listed.
import { Command } from 'commander';
import { readReferenceInputs, type InputRef } from '../inputs/index.js';
import { formatReference, parseReference } from '../ref/reference.js';
import { lockReferences, readLockFile } from '../resolve/lockfile.js';

export interface ListedImage {
  /** Normalised: `registry/repository[:tag][@digest]`. */
  reference: string;
  /** Every place it was found, as written there. */
  sources: { input: string; source: string }[];
}

export interface ListImagesResult {
  images: ListedImage[];
  errors: { input: string; source: string; error: string }[];
}

/** References of every path, normalised and deduplicated (first seen first). */
export async function listImages(paths: string[]): Promise<ListImagesResult> {
  const byRef = new Map<string, ListedImage>();
  const errors: ListImagesResult['errors'] = [];
  for (const path of paths) {
    const lock = await readLockFile(path);
    const found: InputRef[] = lock ? lockReferences(lock).map((ref, i) => ({ ref, source: `${path} (images[${i}])` })) : await readReferenceInputs(path);
    for (const { ref, source } of found) {
      let reference: string;
      try {
        reference = formatReference(parseReference(ref));
      } catch (err) {
        errors.push({ input: ref, source, error: (err as Error).message });
        continue;
      }
      let entry = byRef.get(reference);
      if (!entry) byRef.set(reference, (entry = { reference, sources: [] }));
      entry.sources.push({ input: ref, source });
    }
  }
  return { images: [...byRef.values()], errors };
}

export function listImagesCommand(): Command {
  return new Command('list-images')
    .description('print the image references image lists, Kubernetes YAML, Helm charts and lock files name (what save -f would save)')
    .argument('<paths...>', 'image list, Kubernetes YAML, Helm chart (dir or .tgz) or lock file')
    .option('--json', 'JSON on stdout: each reference with its sources, and any errors')
    .action(async (paths: string[], flags: { json?: boolean }) => {
      const result = await listImages(paths);
      if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else for (const image of result.images) process.stdout.write(`${image.reference}\n`);
      for (const e of result.errors) process.stderr.write(`ocisave: error: ${e.source}: ${e.error}\n`);
      if (result.errors.length) process.exitCode = 1;
    });
}
