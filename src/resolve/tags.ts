// Tag sets: a repository and a rule instead of one tag — every tag, the tags a regular expression
// matches, the tags a semver range admits, the newest N versions (skopeo sync's `images: {repo: []}`,
// `images-by-tag-regex` and `images-by-semver`, and ocisave's --all-tags, --tag-regex, --tag-semver,
// --newest). The registry's tags/list is read once per repository (bounded, see client.listTagPages).
import { createRequire } from 'node:module';
import type * as Semver from 'semver';
import { formatReference, parseReference } from '../ref/reference.js';
import type { RegistryClient } from '../registry/client.js';
import { failureOf, type Failure } from './graph.js';
import { InvalidInputError, inputError } from '../util/errors.js';

// Required on first use, not imported: semver's 48 modules cost ~25 ms of CPU on every save's
// start-up (process.cpuUsage, 17-30 ms in 5 runs), and only tag sets by version read it.
let semverModule: typeof Semver | undefined;
const semver = (): typeof Semver => (semverModule ??= createRequire(import.meta.url)('semver') as typeof Semver);

export interface TagSelector {
  /** Kept when the expression matches anywhere in the tag (unanchored, as skopeo's Go regexp.MatchString). */
  regex?: string;
  /** Kept when the tag, read as a version, satisfies this range. */
  semver?: string;
  /** Of what the other rules kept, the N highest release versions (prereleases such as 1.2.0-rc.1, and tags that are not versions, never count). */
  newest?: number;
}

/** A repository (`registry/repository`, no tag, no digest) and the rule picking its tags. */
export interface TagSetRequest {
  repository: string;
  selector: TagSelector;
  /** Where it was asked for: "arguments", "sync.yaml (quay.io images-by-semver coreos/etcd)". */
  source: string;
}

/** True when `input` names a tag or a digest (`repo:tag`, `repo@sha256:…`), not a bare repository. */
export function namesTagOrDigest(input: string): boolean {
  return input.includes('@') || input.slice(input.lastIndexOf('/') + 1).includes(':');
}

/** Checks a selector's rules before any registry is asked; the message names the bad rule. */
export function checkSelector(sel: TagSelector, what: string): void {
  if (sel.regex !== undefined) compileRegex(sel.regex, what);
  if (sel.semver !== undefined) semverRange(sel.semver, what);
  if (sel.newest !== undefined && (!Number.isInteger(sel.newest) || sel.newest < 1)) throw new InvalidInputError(`${what}: newest must be a whole number of at least 1`);
}

function compileRegex(re: string, what: string): RegExp {
  try {
    return new RegExp(re);
  } catch (err) {
    throw inputError(`${what}: invalid tag regex ${JSON.stringify(re)}: ${(err as Error).message}`, err);
  }
}

/** npm semver range syntax; Masterminds' comma (skopeo: ">= 1.2, < 2") means AND, as a space does here. */
function semverRange(range: string, what: string): string {
  const r = semver().validRange(range.replace(/,/g, ' '));
  if (r === null) throw new InvalidInputError(`${what}: invalid semver range ${JSON.stringify(range)}`);
  return r;
}

/**
 * A tag read as a version the way skopeo's Masterminds/semver NewVersion reads it: an optional `v`,
 * one to three numbers (missing ones are 0), an optional -prerelease and +build. `latest` is none.
 */
export function tagVersion(tag: string): Semver.SemVer | null {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.exec(tag);
  if (!m) return null;
  return semver().parse(`${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}${m[4] ?? ''}${m[5] ?? ''}`);
}

/** The tags a selector keeps, in the order the registry listed them. */
export function selectTags(tags: readonly string[], sel: TagSelector, what = 'tag set'): string[] {
  let kept = [...tags];
  if (sel.regex !== undefined) {
    const re = compileRegex(sel.regex, what);
    kept = kept.filter((t) => re.test(t));
  }
  if (sel.semver !== undefined) {
    const range = semverRange(sel.semver, what);
    kept = kept.filter((t) => {
      const v = tagVersion(t);
      return v !== null && semver().satisfies(v, range);
    });
  }
  if (sel.newest !== undefined) {
    const versions = kept.map((t) => ({ t, v: tagVersion(t) })).filter((x): x is { t: string; v: Semver.SemVer } => x.v !== null && x.v.prerelease.length === 0);
    // Highest first; equal versions (1.2 and v1.2.0) by tag text, so the choice never depends on listing order.
    versions.sort((a, b) => semver().rcompare(a.v, b.v) || (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
    const newest = new Set(versions.slice(0, sel.newest).map((x) => x.t));
    kept = kept.filter((t) => newest.has(t));
  }
  return kept;
}

/** A short description of a selector for messages: "every tag", "tags matching /^1\./, newest 3". */
export function describeSelector(sel: TagSelector): string {
  const parts: string[] = [];
  if (sel.regex !== undefined) parts.push(`matching /${sel.regex}/`);
  if (sel.semver !== undefined) parts.push(`in semver range ${JSON.stringify(sel.semver)}`);
  if (sel.newest !== undefined) parts.push(`newest ${sel.newest}`);
  return parts.length ? `tags ${parts.join(', ')}` : 'every tag';
}

export interface ExpandedTagSets {
  /** `registry/repository:tag` for every selected tag, each once, in request then listing order. */
  references: string[];
  failures: Failure[];
  warnings: string[];
}

/** Lists each repository's tags once and applies every request's selector. */
export async function expandTagSets(client: RegistryClient, requests: readonly TagSetRequest[]): Promise<ExpandedTagSets> {
  const out: ExpandedTagSets = { references: [], failures: [], warnings: [] };
  const listings = new Map<string, Promise<string[]>>();
  const seen = new Set<string>();
  for (const req of requests) {
    const input = `${req.repository} (${describeSelector(req.selector)}, ${req.source})`;
    try {
      const ref = parseReference(req.repository);
      const repo = `${ref.registry}/${ref.repository}`;
      let listing = listings.get(repo);
      if (!listing) listings.set(repo, (listing = client.listTags(ref.registry, ref.repository)));
      const tags = await listing;
      const chosen = selectTags(tags, req.selector, input);
      if (chosen.length === 0) out.warnings.push(`${input}: no tag selected (the repository has ${tags.length})`);
      for (const tag of chosen) {
        const name = formatReference({ registry: ref.registry, repository: ref.repository, tag });
        if (!seen.has(name)) {
          seen.add(name);
          out.references.push(name);
        }
      }
    } catch (err) {
      out.failures.push(failureOf(input, err));
    }
  }
  return out;
}
