// COPY source patterns inside a build context: `*` and `?` within one path component, `[…]`
// classes, and `**` for any number of components (BuildKit's extension of Go's filepath.Match).
// Imports nothing of ours. Node 20's path.matchesGlob is still experimental (it warns on use).
import { readdirSync, type Dirent } from 'node:fs';
import { join, posix } from 'node:path';
import { InvalidInputError, OcisaveError } from '../util/errors.js';

/** Most directory entries looked at for one pattern: a context is a project directory, not a disk. */
export const MAX_GLOB_ENTRIES = 100_000;
const MAX_GLOB_DEPTH = 64;

export function hasMagic(pattern: string): boolean {
  return /[*?[]/.test(pattern);
}

/** The regular expression a pattern stands for, matched against whole POSIX relative paths. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      const slashAfter = pattern[i + 2] === '/';
      // `**/` is zero or more whole components; a trailing `**` is anything below.
      re += slashAfter ? '(?:[^/]*(?:/[^/]*)*/)?' : '.*';
      i += slashAfter ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) throw new InvalidInputError(`pattern ${JSON.stringify(pattern)}: "[" without its "]"`);
      let body = pattern.slice(i + 1, end);
      if (body.startsWith('!') || body.startsWith('^')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += escapeRe(pattern[++i]!);
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`);
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

/**
 * Paths (relative to `root`, POSIX) that `pattern` matches, sorted. A directory that matches is
 * returned whole and not entered. Symbolic links are listed but never followed while walking.
 */
export function expandGlob(root: string, pattern: string): string[] {
  const parts = pattern.split('/');
  const fixed: string[] = [];
  while (parts.length > 1 && !hasMagic(parts[0]!)) fixed.push(parts.shift()!);
  const base = fixed.join('/');
  const re = globToRegExp(pattern);
  const found: string[] = [];
  let seen = 0;
  const walk = (rel: string, depth: number) => {
    if (depth > MAX_GLOB_DEPTH) throw new OcisaveError('LIMIT', `pattern ${JSON.stringify(pattern)}: directories nested deeper than ${MAX_GLOB_DEPTH}`);
    let entries: Dirent[];
    try {
      entries = readdirSync(join(root, rel), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (++seen > MAX_GLOB_ENTRIES) throw new OcisaveError('LIMIT', `pattern ${JSON.stringify(pattern)}: more than ${MAX_GLOB_ENTRIES} entries to look at`);
      const path = rel ? posix.join(rel, e.name) : e.name;
      if (re.test(path)) found.push(path);
      else if (e.isDirectory()) walk(path, depth + 1);
    }
  };
  walk(base, 0);
  return found.sort();
}
