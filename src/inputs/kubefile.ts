// sealer's Kubefile (a Dockerfile for cluster images): the instructions that decide which images a
// build context holds. FROM names the base cluster image; COPY puts files into the image, and what
// lands in manifests/ or charts/ is what `sealer build` scans for images. ARG (with --build-arg) and
// ENV values are substituted as docker does (`$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`,
// `\$` for a literal dollar). Everything else (RUN, CMD, LAUNCH, APP …) is reported as not followed.
import { InvalidInputError, OcisaveError, inputError } from '../util/errors.js';

export interface KubefileCopy {
  sources: string[];
  dest: string;
  line: number;
  /** ADD or COPY, as written (upper case). */
  keyword: string;
}

export interface Kubefile {
  /** FROM images, as substituted (`scratch` left out). */
  bases: { ref: string; line: number }[];
  copies: KubefileCopy[];
  /** Instructions read but not acted on, one message each: "Kubefile:7: RUN not followed". */
  notFollowed: string[];
  /** --build-arg names no ARG declares. */
  unusedBuildArgs: string[];
}

// A Kubefile is a short text; these bound what a hostile one can make us hold. 64 KiB is far more
// than any real instruction after substitution; doubling ARGs (B=${A}${A}, C=${B}${B} …) hit it
// after 16 lines instead of exhausting memory, and the total stops many lines each just under it.
export const MAX_KUBEFILE_BYTES = 1024 * 1024;
export const MAX_EXPANDED_CHARS = 64 * 1024;
export const MAX_TOTAL_EXPANDED_CHARS = 4 * 1024 * 1024;
/** `${A:-${B:-${C…}}}` nesting; docker's own parser has no need of more. */
const MAX_NESTING = 16;

/** Instructions that name no image and need no warning. */
const QUIET = new Set(['LABEL', 'MAINTAINER', 'KUBEVERSION', 'ONBUILD', 'STOPSIGNAL', 'WORKDIR', 'USER', 'EXPOSE', 'VOLUME', 'SHELL', 'HEALTHCHECK']);

interface LogicalLine {
  text: string;
  line: number;
}

/** Joins `\`-continued lines and drops comment and blank lines (comments inside a continuation too, as docker does). */
export function logicalLines(text: string): LogicalLine[] {
  const out: LogicalLine[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  let current: LogicalLine | undefined;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const trimmed = raw.trim();
    if (trimmed.startsWith('#') || (trimmed === '' && !current)) continue;
    const continued = /\\\s*$/.test(raw);
    const part = continued ? raw.replace(/\\\s*$/, '') : raw;
    if (current) current.text += part;
    else current = { text: part, line: i + 1 };
    if (!continued) {
      if (current.text.trim()) out.push({ text: current.text.trim(), line: current.line });
      current = undefined;
    }
  }
  if (current?.text.trim()) out.push({ text: current.text.trim(), line: current.line });
  return out;
}

class Budget {
  private total = 0;
  constructor(private readonly file: string) {}
  charge(line: number, n: number): void {
    if (n > MAX_EXPANDED_CHARS) throw new OcisaveError('LIMIT', `${this.file}:${line}: expands to more than ${MAX_EXPANDED_CHARS} characters (variables that grow with each ARG?)`);
    this.total += n;
    if (this.total > MAX_TOTAL_EXPANDED_CHARS) throw new OcisaveError('LIMIT', `${this.file}:${line}: the Kubefile expands to more than ${MAX_TOTAL_EXPANDED_CHARS} characters in all`);
  }
}

/**
 * Substitutes variables once, left to right: a value is never scanned again, so `ARG A=${A}` or
 * two variables naming each other cannot loop. Unset variables are empty, as in docker.
 */
export function substitute(text: string, vars: ReadonlyMap<string, string>, where: string, depth = 0): string {
  if (depth > MAX_NESTING) throw new OcisaveError('LIMIT', `${where}: variables nested deeper than ${MAX_NESTING}`);
  let out = '';
  let i = 0;
  const grow = (s: string) => {
    out += s;
    if (out.length > MAX_EXPANDED_CHARS) throw new OcisaveError('LIMIT', `${where}: expands to more than ${MAX_EXPANDED_CHARS} characters (variables that grow with each ARG?)`);
  };
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\\' && text[i + 1] === '$') {
      grow('$');
      i += 2;
    } else if (c !== '$') {
      grow(c);
      i++;
    } else if (text[i + 1] === '{') {
      const end = closingBrace(text, i + 2);
      if (end < 0) throw new InvalidInputError(`${where}: "\${" without its closing "}"`);
      grow(braced(text.slice(i + 2, end), vars, where, depth));
      i = end + 1;
    } else {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1, i + 1 + 256));
      if (!m) {
        grow('$');
        i++;
      } else {
        grow(vars.get(m[0]) ?? '');
        i += 1 + m[0].length;
      }
    }
  }
  return out;
}

/** Index of the `}` closing a `${` whose body starts at `from`, counting nested `${…}`; -1 when none. */
function closingBrace(text: string, from: number): number {
  let depth = 0;
  for (let i = from; i < text.length; i++) {
    if (text[i] === '\\') i++;
    else if (text[i] === '$' && text[i + 1] === '{') {
      depth++;
      i++;
    } else if (text[i] === '}') {
      if (depth === 0) return i;
      depth--;
    }
  }
  return -1;
}

function braced(body: string, vars: ReadonlyMap<string, string>, where: string, depth: number): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body);
  if (!m) throw new InvalidInputError(`${where}: bad substitution "\${${body.slice(0, 60)}}"`);
  const value = vars.get(m[1]!);
  const op = m[2];
  if (!op) return value ?? '';
  const set = op.startsWith(':') ? value !== undefined && value !== '' : value !== undefined;
  const word = () => substitute(m[3] ?? '', vars, where, depth + 1);
  if (op.endsWith('-')) return set ? value! : word();
  return set ? word() : '';
}

/** `K=V` words (ENV, ARG); quotes around a value are removed. */
function assignments(text: string): [string, string | undefined][] {
  const out: [string, string | undefined][] = [];
  const re = /([A-Za-z_][A-Za-z0-9_]*)(?:=("(?:[^"\\]|\\.)*"|'[^']*'|\S*))?/y;
  let i = 0;
  while (i < text.length) {
    while (text[i] === ' ' || text[i] === '\t') i++;
    if (i >= text.length) break;
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m || (re.lastIndex < text.length && !/\s/.test(text[re.lastIndex]!))) throw new InvalidInputError(`cannot read "${text.slice(i, i + 60)}"`);
    out.push([m[1]!, m[2] === undefined ? undefined : unquote(m[2])]);
    i = re.lastIndex;
  }
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\(.)/g, '$1');
  if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1);
  return v;
}

/** COPY/ADD operands: the JSON form `["a", "b", "dest"]` or whitespace-separated words; `--flags` dropped. */
function copyOperands(args: string, where: string): { words: string[]; from?: string } {
  let words: string[];
  const flags = [...args.matchAll(/(?:^|\s)--([a-z-]+)(?:=(\S*))?/g)];
  const rest = args.replace(/(?:^|\s)--[a-z-]+(?:=\S*)?/g, ' ').trim();
  if (rest.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rest);
    } catch {
      throw new InvalidInputError(`${where}: COPY's JSON form is not a JSON array of strings`);
    }
    if (!Array.isArray(parsed) || !parsed.every((w) => typeof w === 'string')) throw new InvalidInputError(`${where}: COPY's JSON form is not a JSON array of strings`);
    words = parsed as string[];
  } else {
    words = rest.split(/\s+/).filter(Boolean);
  }
  const from = flags.find((f) => f[1] === 'from')?.[2];
  return { words, from };
}

export interface KubefileOptions {
  /** --build-arg values: they replace the defaults of the ARGs that declare them. */
  buildArgs?: Record<string, string>;
  /** Name in messages. */
  file?: string;
}

export function parseKubefile(text: string, opts: KubefileOptions = {}): Kubefile {
  const file = opts.file ?? 'Kubefile';
  if (Buffer.byteLength(text) > MAX_KUBEFILE_BYTES) throw new OcisaveError('LIMIT', `${file}: larger than ${MAX_KUBEFILE_BYTES} bytes; not a Kubefile`);
  const buildArgs = new Map(Object.entries(opts.buildArgs ?? {}));
  const used = new Set<string>();
  const vars = new Map<string, string>();
  const budget = new Budget(file);
  const out: Kubefile = { bases: [], copies: [], notFollowed: [], unusedBuildArgs: [] };
  for (const { text: line, line: n } of logicalLines(text)) {
    const where = `${file}:${n}`;
    const m = /^(\S+)\s*([\s\S]*)$/.exec(line)!;
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!;
    const expand = () => {
      const s = substitute(args, vars, where);
      budget.charge(n, s.length);
      return s;
    };
    if (keyword === 'ARG') {
      for (const [name, dflt] of withWhere(() => assignments(args), where)) {
        const value = buildArgs.has(name) ? buildArgs.get(name)! : dflt === undefined ? vars.get(name) : substitute(dflt, vars, where);
        if (buildArgs.has(name)) used.add(name);
        if (value !== undefined) {
          budget.charge(n, value.length);
          vars.set(name, value);
        }
      }
    } else if (keyword === 'ENV') {
      const pairs = /^[A-Za-z_][A-Za-z0-9_]*\s+[^=\s]/.test(args) && !args.includes('=')
        ? [[args.split(/\s+/)[0]!, args.replace(/^\S+\s+/, '')] as [string, string]]
        : withWhere(() => assignments(args), where);
      for (const [name, v] of pairs) {
        const value = substitute(v ?? '', vars, where);
        budget.charge(n, value.length);
        vars.set(name, value);
      }
    } else if (keyword === 'FROM') {
      const words = expand().split(/\s+/).filter((w) => !w.startsWith('--'));
      const image = words[0];
      if (!image) throw new InvalidInputError(`${where}: FROM without an image`);
      if (image.toLowerCase() !== 'scratch') out.bases.push({ ref: image, line: n });
    } else if (keyword === 'COPY' || keyword === 'ADD') {
      const { words, from } = copyOperands(expand(), where);
      if (from !== undefined) out.notFollowed.push(`${where}: ${keyword} --from=${from} not followed (it copies from another image)`);
      else if (words.length < 2) throw new InvalidInputError(`${where}: ${keyword} needs a source and a destination`);
      else {
        const sources: string[] = [];
        for (const src of words.slice(0, -1)) {
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src)) out.notFollowed.push(`${where}: ${keyword} from ${safeUrl(src)} not followed (only files of the build context are read)`);
          else sources.push(src);
        }
        if (sources.length) out.copies.push({ sources, dest: words[words.length - 1]!, line: n, keyword });
      }
    } else if (!QUIET.has(keyword)) {
      // The line itself is not printed: RUN and CMD lines can carry secrets.
      out.notFollowed.push(`${where}: ${keyword} not followed`);
    }
  }
  out.unusedBuildArgs = [...buildArgs.keys()].filter((k) => !used.has(k));
  return out;
}

/** A URL without user, password or query, for a warning line. */
function safeUrl(src: string): string {
  try {
    const u = new URL(src);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(a URL)';
  }
}

function withWhere<T>(fn: () => T, where: string): T {
  try {
    return fn();
  } catch (err) {
    throw inputError(`${where}: ${(err as Error).message}`, err);
  }
}
