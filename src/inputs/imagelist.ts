// sealer-style image lists: one reference a line, `#` comments, blank lines.
import { readFile } from 'node:fs/promises';
import { inputError } from '../util/errors.js';

export interface ImageListEntry {
  ref: string;
  /** 1-based line number in the source. */
  line: number;
  /** "file:line", for error messages. */
  source: string;
}

/**
 * Parses image-list text. A `#` starts a comment at the beginning of a line or
 * after whitespace; a `#` glued to other characters is left alone so a broken
 * reference reaches the reference parser and fails there with its line number,
 * instead of being silently truncated.
 */
export function parseImageList(text: string, file = '<input>'): ImageListEntry[] {
  const out: ImageListEntry[] = [];
  // Strip a UTF-8 BOM that editors on Windows like to add.
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const ref = stripComment(lines[i]!).trim();
    if (ref === '') continue;
    out.push({ ref, line: i + 1, source: `${file}:${i + 1}` });
  }
  return out;
}

function stripComment(line: string): string {
  const m = /(^|\s)#/.exec(line);
  return m ? line.slice(0, m.index) : line;
}

export async function readImageList(file: string): Promise<ImageListEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw inputError(`cannot read image list ${file}: ${(err as Error).message}`, err);
  }
  return parseImageList(text, file);
}

// Shape of a reference per the distribution reference grammar, used only to
// decide whether a string found in a chart is meant as an image (charts are
// full of `repository:` keys that are git or chart URLs). Parsing and
// normalisation proper live in src/ref.
const DOMAIN_PART = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)';
const DOMAIN = `(?:${DOMAIN_PART}(?:\\.${DOMAIN_PART})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`;
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const NAME = `(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*`;
const REFERENCE_RE = new RegExp(`^${NAME}(?::${TAG})?(?:@${DIGEST})?$`);
const NAME_RE = new RegExp(`^${NAME}$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_RE = new RegExp(`^${DIGEST}$`);

/** True when `s` has the shape of an image reference (`[host/]path[:tag][@digest]`). */
export function looksLikeImageRef(s: string): boolean {
  return s.length <= 4096 && REFERENCE_RE.test(s);
}

/** True when `s` is a repository name without tag or digest. */
export function looksLikeRepositoryName(s: string): boolean {
  return s.length <= 4096 && NAME_RE.test(s);
}

export function looksLikeTag(s: string): boolean {
  return TAG_RE.test(s);
}

export function looksLikeDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** References in first-seen order, each once. */
export function dedupe<T extends { ref: string }>(refs: T[]): T[] {
  const seen = new Set<string>();
  return refs.filter((r) => (seen.has(r.ref) ? false : (seen.add(r.ref), true)));
}
