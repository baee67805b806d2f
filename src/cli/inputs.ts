// What save, resolve and list-images read: reference arguments, -f inputs of every kind, and the
// flags that shape them (build args of a sealer context, tag sets for repositories given without a tag).
import { Command, InvalidArgumentError } from 'commander';
import { readInputs, type InputRef } from '../inputs/index.js';
import type { Credential } from '../registry/credentials.js';
import type { HostOptionsMap } from '../registry/host-options.js';
import { lockReferences, readLockFile } from '../resolve/lockfile.js';
import { checkSelector, namesTagOrDigest, type TagSelector, type TagSetRequest } from '../resolve/tags.js';
import { positiveInt, referenceArgs } from './options.js';

export interface InputFlags {
  buildArg?: Record<string, string>;
  includeBase?: boolean;
  allTags?: boolean;
  tagRegex?: string;
  tagSemver?: string;
  newest?: number;
}

export interface CollectedInputs {
  /** Every reference, as written, each once. */
  refs: string[];
  /** Where each reference was found (list-images prints it). */
  found: InputRef[];
  tagSets: TagSetRequest[];
  credentials: Map<string, Credential>;
  hostOptions: HostOptionsMap;
  warnings: string[];
  /** The --platform each lock file among the -f inputs was resolved with. */
  lockPlatforms: string[];
}

function buildArg(value: string, prev: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected NAME=VALUE');
  return { ...prev, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** The reference arguments and the repeatable -f inputs of save, resolve and mirror. */
export function addReferenceInputs(cmd: Command): Command {
  return cmd
    .argument('[references...]', 'image references: nginx:1.25, host:port/repo/name:tag, name@sha256:…', referenceArgs, [])
    .option('-f, --file <path>', 'image list, Kubernetes YAML, Helm chart (dir or .tgz), sealer build context (dir or Kubefile), skopeo sync YAML or lock file; repeatable', (v: string, prev: string[] = []) => [...prev, v]);
}

/** --build-arg and --include-base (sealer build contexts). */
export function addContextOptions(cmd: Command): Command {
  return cmd
    .option('--build-arg <name=value>', "sealer build contexts: value of a Kubefile ARG; repeatable", buildArg)
    .option('--include-base', "sealer build contexts: also the Kubefile's FROM image (a cluster image)");
}

/** A flag's rule checked as commander parses it, so a bad one is a usage error (exit 2). */
function rule(kind: 'regex' | 'semver') {
  return (value: string): string => {
    try {
      checkSelector({ [kind]: value }, `--tag-${kind}`);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
    return value;
  };
}

/** Tag-set flags, named after skopeo sync's YAML keys; they apply to reference arguments given without a tag or digest. */
export function addTagSetOptions(cmd: Command): Command {
  return cmd
    .option('--all-tags', 'every tag of each repository given without a tag (skopeo sync: images: {repo: []})')
    .option('--tag-regex <regex>', 'the tags of each repository given without a tag that match this regex (skopeo sync: images-by-tag-regex)', rule('regex'))
    .option('--tag-semver <range>', 'the tags of each repository given without a tag that are versions in this range (skopeo sync: images-by-semver)', rule('semver'))
    .option('--newest <n>', 'of the tags selected (every tag by default), the N highest versions', positiveInt);
}

/** The tag selector the flags ask for, or undefined when no tag-set flag was given. */
export function selectorFrom(flags: InputFlags): TagSelector | undefined {
  if (!flags.allTags && flags.tagRegex === undefined && flags.tagSemver === undefined && flags.newest === undefined) return undefined;
  const sel: TagSelector = { regex: flags.tagRegex, semver: flags.tagSemver, newest: flags.newest };
  checkSelector(sel, 'tag-set flags');
  return sel;
}

/** Arguments, every -f input (lock files included), and the tag sets; each reference once. */
export async function collectInputs(args: string[], files: string[] = [], flags: InputFlags = {}): Promise<CollectedInputs> {
  const out: CollectedInputs = { refs: [], found: [], tagSets: [], credentials: new Map(), hostOptions: {}, warnings: [], lockPlatforms: [] };
  const selector = selectorFrom(flags);
  for (const arg of args) {
    if (selector && !namesTagOrDigest(arg)) out.tagSets.push({ repository: arg, selector, source: 'arguments' });
    else out.found.push({ ref: arg, source: 'arguments' });
  }
  if (selector && out.tagSets.length === 0) out.warnings.push('tag-set flags apply to repositories given as arguments without a tag; none was given');
  for (const file of files) {
    const lock = await readLockFile(file);
    if (lock) {
      out.lockPlatforms.push(lock.platforms);
      out.found.push(...lockReferences(lock).map((ref, i) => ({ ref, source: `${file} (images[${i}])` })));
      continue;
    }
    const set = await readInputs(file, { buildArgs: flags.buildArg, includeBase: flags.includeBase });
    out.found.push(...set.refs);
    out.tagSets.push(...set.tagSets);
    for (const [registry, cred] of set.credentials) out.credentials.set(registry, cred);
    Object.assign(out.hostOptions, set.hostOptions);
    out.warnings.push(...set.warnings);
  }
  out.refs = [...new Set(out.found.map((f) => f.ref))];
  return out;
}
