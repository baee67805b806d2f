// Helm charts (directory or packaged .tgz, with their dependencies) → the
// images they would deploy, found without rendering templates.
import { createReadStream } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, posix, sep } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { isAlias, isMap, isScalar, isSeq, type Document } from 'yaml';
import { dedupe, looksLikeDigest, looksLikeImageRef, looksLikeRepositoryName, looksLikeTag } from './imagelist.js';
import { deref, mapGet, parseYamlDocuments, scalarText } from './kube.js';
import { quoteInput } from '../ref/reference.js';
import { inputError, InvalidInputError, OcisaveError } from '../util/errors.js';

export interface HelmImageRef {
  ref: string;
  /** Where it was found, e.g. "chart/values.yaml (.image)" or "chart/templates/job.yaml:12". */
  source: string;
}

/** A chart's files, keyed by POSIX path relative to the chart root. */
export type ChartFiles = Map<string, Buffer>;

/**
 * Limits of one chart tree: the chart and every subchart in it, directories and nested .tgz alike.
 * Bytes are Helm's own defaults (pkg/chart/loader: MaxDecompressedChartSize 100 MiB,
 * MaxDecompressedFileSize 5 MiB), but shared by the whole tree, where Helm gives each archive its
 * own: per archive, an 11 KB chart holding 16 subcharts of 250 MB each was read to the end at
 * 4.7 GB RSS. Real charts are kilobytes to a few MB (kube-prometheus-stack with all its subcharts: ~1 MB).
 */
export const CHART_LIMITS = {
  /** Bytes read (decompressed) across the whole tree; nested archives count once packed, once unpacked. */
  treeBytes: 100 * 1024 * 1024,
  /** Bytes of any one file in it. */
  fileBytes: 5 * 1024 * 1024,
  /** Archive entries across the whole tree. */
  entries: 100_000,
  /** Subcharts inside subcharts. */
  depth: 16,
} as const;

export type ChartLimits = { [K in keyof typeof CHART_LIMITS]: number };

/** A limit of CHART_LIMITS was passed: the chart is refused whole, in one line. */
export class ChartLimitError extends OcisaveError {
  constructor(chart: string, what: string) {
    super('LIMIT', `Helm chart ${chart}: ${what}; not read further (a real chart is far smaller: a decompression bomb?)`);
    this.name = 'ChartLimitError';
  }
}

const MiB = (n: number) => `${+(n / 1024 / 1024).toFixed(2)} MiB`;

/** One budget for a whole chart tree, charged by every reader in it. */
export class ChartBudget {
  private bytesLeft: number;
  private entriesLeft: number;

  constructor(
    /** The chart as the user named it: every limit error names it. */
    readonly chart: string,
    readonly limits: ChartLimits = CHART_LIMITS,
  ) {
    this.bytesLeft = limits.treeBytes;
    this.entriesLeft = limits.entries;
  }

  bytes(n: number): void {
    this.bytesLeft -= n;
    if (this.bytesLeft < 0) throw new ChartLimitError(this.chart, `it and its subcharts unpack to more than ${MiB(this.limits.treeBytes)} (the limit for a whole chart tree)`);
  }

  file(name: string, size: number): void {
    if (size > this.limits.fileBytes) throw new ChartLimitError(this.chart, `${quoteInput(name)} is ${MiB(size)}, more than ${MiB(this.limits.fileBytes)} (the limit for one chart file)`);
  }

  entry(): void {
    if (--this.entriesLeft < 0) throw new ChartLimitError(this.chart, `it and its subcharts hold more than ${this.limits.entries} archive entries`);
  }

  depth(depth: number, label: string): void {
    if (depth > this.limits.depth) throw new ChartLimitError(this.chart, `subcharts nested deeper than ${this.limits.depth} levels (at ${quoteInput(label)})`);
  }
}

/** Reads a chart given as a directory or a .tgz and returns its images, deduplicated, first seen first. */
export async function readHelmChart(path: string, limits: ChartLimits = CHART_LIMITS): Promise<HelmImageRef[]> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw inputError(`cannot read Helm chart ${path}: ${(err as Error).message}`, err);
  }
  const budget = new ChartBudget(path, limits);
  const chart = st.isDirectory()
    ? { files: await loadChartDir(path, budget), label: path }
    : await loadChartArchive(createReadStream(path), path, budget);
  return dedupe(await findChartImages(chart.files, chart.label, [], 0, budget));
}

/** Reads the files of a chart directory that can name images: Chart.yaml, values, templates and charts/. */
export async function loadChartDir(dir: string, budget = new ChartBudget(dir)): Promise<ChartFiles> {
  const files: ChartFiles = new Map();
  try {
    await stat(join(dir, 'Chart.yaml'));
  } catch {
    throw new InvalidInputError(`${dir} is not a Helm chart: it has no Chart.yaml`);
  }
  const inside = await insideChart(dir);
  for (const name of ['Chart.yaml', 'values.yaml', 'requirements.yaml']) {
    await inside(join(dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const buf = await readIfFile(join(dir, name), budget);
    if (buf) files.set(name, buf);
  }
  await readTree(dir, 'templates', files, 0, budget, inside);
  await readTree(dir, 'charts', files, 0, budget, inside);
  return files;
}

/**
 * A check that a path of the chart, symbolic links resolved, stays inside the chart directory.
 * Helm follows links in chart directories; ocisave follows only those that stay inside, so a chart
 * carried in from elsewhere cannot make it read (and echo in messages) files of this machine.
 */
async function insideChart(dir: string): Promise<(path: string) => Promise<void>> {
  const root = await realpath(dir);
  return async (path) => {
    const real = await realpath(path);
    if (real !== root && !real.startsWith(`${root}${sep}`)) throw new InvalidInputError(`${path} in Helm chart ${dir} is a symbolic link to outside the chart (${real}); refused`);
  };
}

async function readIfFile(path: string, budget: ChartBudget): Promise<Buffer | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return undefined;
    budget.file(path, st.size);
    budget.bytes(st.size);
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readTree(root: string, rel: string, files: ChartFiles, depth: number, budget: ChartBudget, inside: (path: string) => Promise<void>): Promise<void> {
  // Helm follows symlinks in chart directories; the depth bound stops link loops.
  if (depth > 32) throw new OcisaveError('LIMIT', `${join(root, rel)}: directories nested too deep (symlink loop?)`);
  let entries: string[];
  try {
    entries = await readdir(join(root, rel));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw err;
  }
  entries.sort();
  for (const name of entries) {
    const childRel = `${rel}/${name}`;
    const st = await stat(join(root, childRel)).catch(() => undefined);
    if (!st) continue; // dangling symlink
    await inside(join(root, childRel));
    if (st.isDirectory()) await readTree(root, childRel, files, depth + 1, budget, inside);
    else if (st.isFile()) {
      const buf = await readIfFile(join(root, childRel), budget);
      if (buf) files.set(childRel, buf);
    }
  }
}

/**
 * Unpacks a chart archive into memory (nothing is written to disk, so entry names cannot escape
 * anywhere), streaming: every decompressed byte is charged to `budget` as it comes out of gunzip,
 * so a bomb stops at the limit, and a file is refused by its header before its bytes are read.
 * Helm archives hold one top directory named after the chart; the chart root is the directory of
 * the shallowest Chart.yaml.
 */
export async function loadChartArchive(data: Buffer | Readable, label: string, budget = new ChartBudget(label)): Promise<{ files: ChartFiles; label: string }> {
  const all = new Map<string, Buffer>();
  const ex = tarExtract();
  const reading = (async () => {
    for await (const entry of ex) {
      const h = entry.header;
      budget.entry();
      if (h.type !== 'file' && h.type !== 'contiguous-file') {
        entry.resume();
        continue;
      }
      budget.file(`${label}/${h.name}`, h.size ?? 0);
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const name = posix.normalize(h.name.replace(/^\.?\/+/, ''));
      if (name.startsWith('../') || name === '..') continue;
      all.set(name, Buffer.concat(chunks));
    }
  })().catch((err: Error) => {
    ex.destroy(err); // stop the pipeline too: nothing more is read once a limit is passed
    throw err;
  });
  const charge = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      try {
        budget.bytes(chunk.length);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
  });
  const source = Buffer.isBuffer(data) ? Readable.from([data]) : data;
  try {
    await Promise.all([pipeline(source, createGunzip(), charge, ex), reading]);
  } catch (err) {
    if (err instanceof ChartLimitError) throw err;
    throw inputError(`cannot read Helm chart archive ${label}: ${(err as Error).message}`, err);
  }
  let root: string | undefined;
  for (const name of all.keys()) {
    if (posix.basename(name) !== 'Chart.yaml') continue;
    const dir = posix.dirname(name);
    if (root === undefined || depthOf(dir) < depthOf(root)) root = dir;
  }
  if (root === undefined) throw new InvalidInputError(`${label} is not a Helm chart archive: it has no Chart.yaml`);
  const prefix = root === '.' ? '' : `${root}/`;
  const files: ChartFiles = new Map();
  for (const [name, buf] of all) if (name.startsWith(prefix)) files.set(name.slice(prefix.length), buf);
  return { files, label: prefix ? `${label}#${root}` : `${label}#` };
}

function depthOf(dir: string): number {
  return dir === '.' ? 0 : dir.split('/').length;
}

/** Chart values as a plain tree. Numbers keep their source text (`tag: 8.0` → "8.0"). */
export type Value = string | boolean | null | Value[] | ValueMap;
export type ValueMap = Map<string, Value>;

function isValueMap(v: Value | undefined): v is ValueMap {
  return v instanceof Map;
}

/**
 * Finds images in one chart and, recursively, its dependencies.
 * `overrides` are the parent charts' values for this subchart, merged over its
 * own values.yaml as Helm does, so a parent that pins `mysql.image.tag` yields
 * the image that would really be deployed.
 */
export async function findChartImages(
  files: ChartFiles,
  label: string,
  overrides: ValueMap[] = [],
  depth = 0,
  budget = new ChartBudget(label),
): Promise<HelmImageRef[]> {
  budget.depth(depth, label);
  const out: HelmImageRef[] = [];
  const chartYaml = files.get('Chart.yaml');
  if (!chartYaml) throw new InvalidInputError(`${label} is not a Helm chart: it has no Chart.yaml`);
  const chartFile = `${label}/Chart.yaml`;
  const chartDoc = parseYamlDocuments(chartYaml.toString('utf8'), chartFile).docs[0];
  const chartRoot = chartDoc ? deref(chartDoc.contents, chartDoc) : undefined;
  const chart = chartDoc && isMap(chartRoot) ? toValue(chartRoot, chartDoc) : new Map<string, Value>();
  if (!isValueMap(chart)) throw new InvalidInputError(`${chartFile}: not a mapping`);
  const appVersion = str(chart.get('appVersion'));

  // 1. Images the chart declares in annotations.
  const annotations = chart.get('annotations');
  if (isValueMap(annotations)) {
    for (const key of ['helm.sh/images', 'artifacthub.io/images']) {
      const text = annotations.get(key);
      if (typeof text !== 'string') continue;
      const doc = parseYamlDocuments(text, `${chartFile} annotation ${key}`).docs[0];
      const list = doc ? toValue(deref(doc.contents, doc), doc) : null;
      if (!Array.isArray(list)) continue;
      for (const item of list) {
        const ref = typeof item === 'string' ? item : isValueMap(item) ? str(item.get('image')) : undefined;
        if (ref && looksLikeImageRef(ref.trim())) out.push({ ref: ref.trim(), source: `${chartFile} (${key})` });
      }
    }
  }

  // 2. values.yaml, with parents' overrides merged in.
  let values: ValueMap = new Map();
  const valuesYaml = files.get('values.yaml');
  const valuesFile = `${label}/values.yaml`;
  if (valuesYaml) {
    const doc = parseYamlDocuments(valuesYaml.toString('utf8'), valuesFile).docs[0];
    const v = doc ? toValue(deref(doc.contents, doc), doc) : null;
    if (isValueMap(v)) values = v;
  }
  for (const o of overrides) values = mergeValues(values, o);
  findValueImages(values, valuesFile, appVersion, out);

  // 3. Literal images in templates.
  for (const [name, buf] of files) {
    if (!name.startsWith('templates/') || posix.basename(name) === 'NOTES.txt') continue;
    findTemplateImages(buf.toString('utf8'), `${label}/${name}`, out);
  }

  // 4. Dependencies in charts/: unpacked directories and packaged archives.
  const aliases = dependencyAliases(chart, files, label);
  const subcharts: { files: ChartFiles; label: string }[] = [];
  const subdirs = new Set<string>();
  for (const name of files.keys()) {
    const m = /^charts\/([^/]+)\/Chart\.yaml$/.exec(name);
    if (m) subdirs.add(m[1]!);
  }
  for (const dir of [...subdirs].sort()) {
    const prefix = `charts/${dir}/`;
    const sub: ChartFiles = new Map();
    for (const [name, buf] of files) if (name.startsWith(prefix)) sub.set(name.slice(prefix.length), buf);
    subcharts.push({ files: sub, label: `${label}/charts/${dir}` });
  }
  for (const [name, buf] of [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!/^charts\/[^/]+\.(tgz|tar\.gz)$/.test(name)) continue;
    subcharts.push(await loadChartArchive(buf, `${label}/${name}`, budget));
  }
  for (const sub of subcharts) {
    const subName = chartNameOf(sub.files, sub.label);
    const keys = aliases.get(subName) ?? [subName];
    for (const key of keys) {
      const o = values.get(key);
      out.push(...(await findChartImages(sub.files, sub.label, isValueMap(o) ? [o] : [], depth + 1, budget)));
    }
  }
  return out;
}

function chartNameOf(files: ChartFiles, label: string): string {
  const buf = files.get('Chart.yaml');
  if (!buf) return posix.basename(label);
  const doc = parseYamlDocuments(buf.toString('utf8'), `${label}/Chart.yaml`).docs[0];
  const root = doc ? deref(doc.contents, doc) : undefined;
  return (doc && isMap(root) && scalarText(mapGet(root, 'name', doc))) || posix.basename(label);
}

/** Dependency name → the keys its values live under (its aliases, or its name). */
function dependencyAliases(chart: ValueMap, files: ChartFiles, label: string): Map<string, string[]> {
  let deps = chart.get('dependencies');
  // apiVersion v1 charts list dependencies in requirements.yaml.
  const req = files.get('requirements.yaml');
  if (!Array.isArray(deps) && req) {
    const doc = parseYamlDocuments(req.toString('utf8'), `${label}/requirements.yaml`).docs[0];
    const v = doc ? toValue(deref(doc.contents, doc), doc) : null;
    if (isValueMap(v)) deps = v.get('dependencies');
  }
  const out = new Map<string, string[]>();
  if (!Array.isArray(deps)) return out;
  for (const d of deps) {
    if (!isValueMap(d)) continue;
    const name = str(d.get('name'));
    if (!name) continue;
    const key = str(d.get('alias')) || name;
    const list = out.get(name) ?? [];
    if (!list.includes(key)) list.push(key);
    out.set(name, list);
  }
  return out;
}

/** YAML node → plain tree. Shared anchors convert once (no alias blow-up); `<<` merge keys apply. */
function toValue(node: unknown, doc: Document, memo = new Map<unknown, Value>(), depth = 0): Value {
  node = deref(node, doc);
  if (depth > 200) throw new OcisaveError('LIMIT', 'YAML nested too deep');
  const cached = memo.get(node);
  if (cached !== undefined) return cached;
  if (isScalar(node)) {
    if (typeof node.value === 'boolean') return node.value;
    return scalarText(node) ?? null;
  }
  if (isSeq(node)) {
    const arr: Value[] = [];
    memo.set(node, arr);
    for (const item of node.items) arr.push(toValue(item, doc, memo, depth + 1));
    return arr;
  }
  if (isMap(node)) {
    const map: ValueMap = new Map();
    memo.set(node, map);
    const merged: ValueMap[] = [];
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) continue;
      if (key === '<<' && (isAlias(pair.value) || isSeq(pair.value) || isMap(pair.value))) {
        const src = toValue(pair.value, doc, memo, depth + 1);
        for (const m of Array.isArray(src) ? src : [src]) if (isValueMap(m)) merged.push(m);
        continue;
      }
      map.set(key, toValue(pair.value, doc, memo, depth + 1));
    }
    // Keys written in the map win over merged ones; earlier merge sources win over later ones.
    for (const m of merged) for (const [k, v] of m) if (!map.has(k)) map.set(k, v);
    return map;
  }
  return null;
}

/** Helm's coalescing: maps merge key by key, anything else in `over` replaces; null deletes. */
function mergeValues(base: ValueMap, over: ValueMap): ValueMap {
  const out: ValueMap = new Map(base);
  for (const [k, v] of over) {
    const b = out.get(k);
    if (v === null) out.delete(k);
    else if (isValueMap(b) && isValueMap(v)) out.set(k, mergeValues(b, v));
    else out.set(k, v);
  }
  return out;
}

function str(v: Value | undefined): string | undefined {
  return typeof v === 'string' ? v.trim() : undefined;
}

const IMAGE_KEY = /^image$|Image$/;

function findValueImages(values: ValueMap, file: string, appVersion: string | undefined, out: HelmImageRef[]): void {
  const seen = new Set<Value>();
  const walk = (v: Value, path: string): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (Array.isArray(v)) {
      v.forEach((item, i) => walk(item, `${path}[${i}]`));
      return;
    }
    const block = imageFromBlock(v, appVersion);
    if (block) out.push({ ref: block, source: `${file} (${path || '.'})` });
    for (const [k, child] of v) {
      const childPath = `${path}.${k}`;
      if (typeof child === 'string' && IMAGE_KEY.test(k)) {
        const ref = child.trim();
        if (!ref.includes('{{') && looksLikeImageRef(ref)) out.push({ ref, source: `${file} (${childPath})` });
      } else if (isValueMap(child) && IMAGE_KEY.test(k) && !child.has('repository')) {
        // `image: {name: foo/bar, tag: 1.2}`, seen in some charts; only trusted under an image key.
        const ref = imageFromBlock(child, appVersion, 'name');
        if (ref) out.push({ ref, source: `${file} (${childPath})` });
      }
      walk(child, childPath);
    }
  };
  walk(values, '');
}

/**
 * An image block: `{repository, tag?, registry?, digest?}` (Bitnami's shape has
 * all four). A missing or empty tag falls back to the chart's appVersion, as
 * `{{ .Values.image.tag | default .Chart.AppVersion }}` does in most charts.
 * When a digest is given the tag is kept too (`repo:tag@digest` is a valid
 * reference, and the digest is what gets pulled).
 */
function imageFromBlock(block: ValueMap, appVersion: string | undefined, nameKey = 'repository'): string | undefined {
  const repository = str(block.get(nameKey));
  if (!repository || repository.includes('{{')) return undefined;
  const registry = str(block.get('registry'))?.replace(/\/+$/, '');
  let name = registry ? `${registry}/${repository}` : repository;
  if (!looksLikeImageRef(name)) return undefined;
  let tag = str(block.get('tag'));
  let digest = str(block.get('digest'));
  if (tag?.includes('{{')) tag = undefined;
  if (digest?.includes('{{')) digest = undefined;
  // Some charts put the digest in `tag`.
  if (tag && !digest && looksLikeDigest(tag)) [tag, digest] = [undefined, tag];
  if (!looksLikeRepositoryName(name)) {
    // The repository already carries a tag or digest.
    if (digest && !name.includes('@')) name += `@${digest}`;
    return looksLikeImageRef(name) ? name : undefined;
  }
  if (!tag && !digest && appVersion && looksLikeTag(appVersion)) tag = appVersion;
  if (tag) name += `:${tag}`;
  if (digest && !tag?.includes('@')) name += `@${digest}`;
  return looksLikeImageRef(name) ? name : undefined;
}

const TEMPLATE_IMAGE = /^\s*(?:-\s+)?image\s*:\s*(?:"([^"]*)"|'([^']*)'|([^\s"'#]+))\s*(?:#.*)?$/;

/** Literal `image: foo/bar:1.2` lines; anything with template actions is left to values. */
function findTemplateImages(text: string, file: string, out: HelmImageRef[]): void {
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.includes('{{')) continue;
    const m = TEMPLATE_IMAGE.exec(line);
    const ref = m && (m[1] ?? m[2] ?? m[3])?.trim();
    if (ref && looksLikeImageRef(ref)) out.push({ ref, source: `${file}:${i + 1}` });
  }
}
