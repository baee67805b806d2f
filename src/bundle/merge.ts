// `ocisave merge A B... -o OUT`: registry layouts (sharded saves, say) into one. Content-addressed
// paths (blobs, revision and layer links) never conflict; a tag that names different manifests in
// two inputs is an error naming both. Each input is verified first (ocisave verify's checks:
// every blob re-hashed, every link and reference followed), so a damaged input is named before
// anything is written. Blobs are hard-linked from the inputs where the filesystem allows, copied
// otherwise; the output is built under a staging name and renamed when complete.
import { existsSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openRegular, readRegular } from '../fs/contained.js';
import { placeBlob, RunDirs, writeAtomically } from '../link/files.js';
import { REGISTRY_ROOT } from '../link/registry.js';
import { scanRegistryLayout } from './registry.js';
import { BundleError } from './types.js';
import { verifyBundle } from './verify.js';

export interface MergeReport {
  output: string;
  inputs: string[];
  repositories: number;
  tags: number;
  blobs: { linked: number; copied: number; shared: number };
  /** Files under repositories/ (links) written. */
  links: number;
  seconds: number;
}

// A link file holds "sha256:<64 hex>" (71 bytes); anything much larger under repositories/ is not ours to copy.
const MAX_LINK_BYTES = 4096;
// Anything deeper is not a registry layout a save wrote: repository names of 256 chars have < 128 components.
const MAX_DEPTH = 160;

/** Regular files under `dir`, as paths relative to it; upload sessions (`_uploads`) are skipped. */
async function filesUnder(dir: string, depth = 0): Promise<string[]> {
  if (depth > MAX_DEPTH) throw new BundleError(`${dir}: directories nest more than ${MAX_DEPTH} deep`);
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.name === '_uploads') continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(path, depth + 1)).map((p) => join(e.name, p)));
    else if (e.isFile()) out.push(e.name);
  }
  return out;
}

/** Refuses a tag that two inputs point at different manifests. */
async function checkTags(inputs: readonly string[]): Promise<{ repositories: Set<string>; tags: number }> {
  const owners = new Map<string, { input: string; digest: string }>();
  const repositories = new Set<string>();
  for (const input of inputs) {
    const scan = await scanRegistryLayout(input);
    for (const repo of scan.repositories.values()) {
      repositories.add(repo.name);
      for (const [tag, digest] of repo.tags) {
        const name = `${repo.name}:${tag}`;
        const first = owners.get(name);
        if (!first) owners.set(name, { input, digest });
        else if (first.digest !== digest) throw new BundleError(`tag ${name} is ${first.digest} in ${first.input} but ${digest} in ${input}: merge refuses to pick one`);
      }
    }
  }
  return { repositories, tags: owners.size };
}

export async function mergeLayouts(inputs: readonly string[], output: string): Promise<MergeReport> {
  const started = Date.now();
  if (inputs.length < 1) throw new BundleError('merge needs at least one input layout');
  if (existsSync(output)) throw new BundleError(`${output} already exists: merge writes a new layout`);
  for (const input of inputs) {
    const r = await verifyBundle(input);
    if (r.format !== 'registry') throw new BundleError(`${input} is not a registry layout (format: ${r.format}): merge reads registry layouts (save --format registry)`);
    if (!r.ok) throw new BundleError(`${input} fails verification (${r.problems.length} problems), first: ${r.problems[0]!.message}`);
  }
  const { repositories, tags } = await checkTags(inputs);
  const report: MergeReport = { output, inputs: [...inputs], repositories: repositories.size, tags, blobs: { linked: 0, copied: 0, shared: 0 }, links: 0, seconds: 0 };
  await writeAtomically(output, async (staging) => {
    const dirs = new RunDirs();
    for (const input of inputs) {
      const root = join((await scanRegistryLayout(input)).root, REGISTRY_ROOT);
      const to = join(staging, REGISTRY_ROOT);
      // Files are reached through the contained opener (no link followed, inside the input), and a
      // hard link is kept only when it is the very file that was opened (placeBlob checks).
      for (const file of await filesUnder(join(root, 'blobs'))) {
        const rel = join('blobs', file);
        const how = await placeBlob({ path: join(root, rel), open: () => openRegular(root, rel) }, join(to, rel), undefined, dirs);
        if (how === 'linked') report.blobs.linked++;
        else if (how === 'copied') report.blobs.copied++;
        else report.blobs.shared++;
      }
      for (const file of await filesUnder(join(root, 'repositories'))) {
        const dest = join(to, 'repositories', file);
        const bytes = await readRegular(root, join('repositories', file), MAX_LINK_BYTES);
        if (existsSync(dest)) {
          // Same path, same bytes: a shared link. Different bytes only for a tag, refused above.
          if (!(await readFile(dest)).equals(bytes)) throw new BundleError(`repositories/${file} differs between inputs (${input} and an earlier one)`);
          continue;
        }
        dirs.ensure(join(dest, '..'));
        writeFileSync(dest, bytes);
        report.links++;
      }
    }
    report.seconds = (Date.now() - started) / 1000;
  });
  return report;
}
