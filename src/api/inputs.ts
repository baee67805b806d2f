// Input collection for save, resolve, mirror and list-images: reference arguments, every -f input
// (image lists, Kubernetes YAML, charts, build contexts, sync YAML, lock files), --lock files, tag
// sets and --shard, into the references and tag sets the engine resolves.
import { readInputs, type InputRef } from '../inputs/index.js';
import { parsePlatformSelector, type PlatformSelector } from '../ref/platform.js';
import { parseReference } from '../ref/reference.js';
import { inShard, parseShard, type Shard } from '../ref/shard.js';
import type { Credential } from '../registry/credentials.js';
import type { HostOptionsMap } from '../registry/host-options.js';
import { lockReferences, readLockFile } from '../resolve/lockfile.js';
import { checkSelector, namesTagOrDigest, type TagSelector, type TagSetRequest } from '../resolve/tags.js';
import { InvalidInputError } from '../util/errors.js';

/** The inputs of a request, named after the CLI's flags. */
export interface InputOptions {
  /** Reference arguments: nginx:1.25, host:port/repo:tag, name@sha256:… (a repository alone with tag-set options). */
  references?: string[];
  /** -f inputs: image lists, Kubernetes YAML, Helm charts, sealer build contexts, skopeo sync YAML, lock files. */
  file?: string[];
  /** Lock files (resolve --lock) whose pinned digests are inputs too. */
  lock?: string[];
  /** Sealer build contexts: Kubefile ARG values. */
  buildArg?: Record<string, string>;
  /** Sealer build contexts: also the Kubefile's FROM image. */
  includeBase?: boolean;
  /** Tag sets for repositories given without a tag (skopeo sync's keys). */
  allTags?: boolean;
  tagRegex?: string;
  tagSemver?: string;
  newest?: number;
  /** Only part K of N of the inputs, split by repository: { index: K, count: N } or "K/N". */
  shard?: Shard | string;
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
  /** The --platform each lock file (-f or --lock) was resolved with. */
  lockPlatforms: string[];
}

/** The tag selector the options ask for, or undefined when none was given. */
export function selectorFrom(o: InputOptions): TagSelector | undefined {
  if (!o.allTags && o.tagRegex === undefined && o.tagSemver === undefined && o.newest === undefined) return undefined;
  const sel: TagSelector = { regex: o.tagRegex, semver: o.tagSemver, newest: o.newest };
  checkSelector(sel, 'tag-set options');
  return sel;
}

function emptyInputs(): CollectedInputs {
  return { refs: [], found: [], tagSets: [], credentials: new Map(), hostOptions: {}, warnings: [], lockPlatforms: [] };
}

/** Arguments, every -f input (lock files included), and the tag sets; each reference once. */
export async function collectInputs(args: string[], files: string[] = [], o: InputOptions = {}): Promise<CollectedInputs> {
  const out = emptyInputs();
  const selector = selectorFrom(o);
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
    const set = await readInputs(file, { buildArgs: o.buildArg, includeBase: o.includeBase });
    out.found.push(...set.refs);
    out.tagSets.push(...set.tagSets);
    for (const [registry, cred] of set.credentials) out.credentials.set(registry, cred);
    Object.assign(out.hostOptions, set.hostOptions);
    out.warnings.push(...set.warnings);
  }
  out.refs = [...new Set(out.found.map((f) => f.ref))];
  return out;
}

/** The pinned references of --lock files, and the platforms each was resolved with. */
export async function collectLocks(files: string[] = []): Promise<{ refs: string[]; platforms: string[] }> {
  const refs: string[] = [];
  const platforms: string[] = [];
  for (const file of files) {
    const lock = await readLockFile(file);
    if (!lock) throw new InvalidInputError(`${file} is not an ocisave lock file (write one with: ocisave resolve … --lock ${file})`);
    refs.push(...lockReferences(lock));
    platforms.push(lock.platforms);
  }
  return { refs, platforms };
}

/** The platforms that lock files agree on, as the default for a save or mirror from them. */
export function lockPlatforms(platforms: string[]): PlatformSelector | undefined {
  const distinct = new Set(platforms);
  return distinct.size === 1 ? parsePlatformSelector([...distinct][0]!) : undefined;
}

/** Registries named by the inputs (for username/password), ignoring inputs that do not parse. */
export function registriesOf(inputs: string[]): string[] {
  const out = new Set<string>();
  for (const input of inputs) {
    try {
      out.add(parseReference(input).registry);
    } catch {
      // reported by the engine itself, with the reference named
    }
  }
  return [...out];
}

/** The references and tag sets of shard `shard` (all of them without one). A reference that does not parse goes to shard 1, which reports it. */
export function shardInputs(shard: Shard | undefined, refs: string[], tagSets: TagSetRequest[]): { refs: string[]; tagSets: TagSetRequest[] } {
  if (!shard) return { refs, tagSets };
  const mine = (input: string) => {
    try {
      const ref = parseReference(input);
      return inShard(shard, ref.registry, ref.repository);
    } catch {
      return shard.index === 1;
    }
  };
  return { refs: refs.filter(mine), tagSets: tagSets.filter((t) => mine(t.repository)) };
}

/** What a save, resolve or mirror request resolves: its shard of every input. */
export interface GatheredInputs {
  collected: CollectedInputs;
  /** This shard's references (locks included) and tag sets. */
  refs: string[];
  tagSets: TagSetRequest[];
  /** Inputs before sharding (references and tag sets). */
  total: number;
  shard?: Shard;
  /** The platforms every lock given (--lock or -f) agrees on. */
  lockPlatform?: PlatformSelector;
  /** Registries the inputs name (for username/password). */
  registries: string[];
}

export async function gatherInputs(o: InputOptions): Promise<GatheredInputs> {
  const shard = typeof o.shard === 'string' ? parseShard(o.shard) : o.shard;
  const locked = await collectLocks(o.lock);
  const collected = await collectInputs(o.references ?? [], o.file, o);
  const all = [...new Set([...collected.refs, ...locked.refs])];
  const { refs, tagSets } = shardInputs(shard, all, collected.tagSets);
  return {
    collected,
    refs,
    tagSets,
    total: all.length + collected.tagSets.length,
    shard,
    lockPlatform: lockPlatforms([...locked.platforms, ...collected.lockPlatforms]),
    registries: registriesOf([...refs, ...tagSets.map((t) => t.repository)]),
  };
}
