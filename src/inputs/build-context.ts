// sealer build contexts → the images `sealer build` would find and pull: a directory with a
// Kubefile, whose COPY instructions put files into manifests/ or charts/, and those files are
// scanned: Kubernetes YAML for pod images, every file named imageList as an image list, and Helm
// charts (directories with Chart.yaml, or .tgz) with their subcharts. A directory without a Kubefile
// is scanned the same way at DIR/manifests, DIR/charts and DIR/imageList. Nothing outside the
// context is read: sources are resolved (symbolic links too) and must stay inside it.
import { readFile, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, posix, sep } from 'node:path';
import { expandGlob, hasMagic } from './glob.js';
import { dedupe, parseImageList } from './imagelist.js';
import { parseKubefile } from './kubefile.js';
import { InvalidInputError, OcisaveError } from '../util/errors.js';

export interface ContextRef {
  ref: string;
  source: string;
}

export interface BuildContextOptions {
  buildArgs?: Record<string, string>;
  /** Also list the Kubefile's FROM images (cluster images, OCI images too). */
  includeBase?: boolean;
}

export interface BuildContextResult {
  refs: ContextRef[];
  warnings: string[];
}

/** Where sealer looks for images inside the cluster image. */
const SCANNED_DESTINATIONS = ['manifests', 'charts'];
/** Files and directories visited below one COPY source or default directory. */
const MAX_SCAN_ENTRIES = 100_000;
const MAX_SCAN_DEPTH = 32;
/** YAML manifests and image lists are text a person wrote; larger files are not what we scan. */
const MAX_TEXT_BYTES = 16 * 1024 * 1024;

/** True when `dir` is a build context: it has a Kubefile, or one of manifests/, charts/, imageList. */
export async function isBuildContext(dir: string): Promise<boolean> {
  for (const name of ['Kubefile', ...SCANNED_DESTINATIONS, 'imageList']) {
    if (await exists(join(dir, name))) return true;
  }
  return false;
}

export async function readBuildContext(dir: string, opts: BuildContextOptions = {}): Promise<BuildContextResult> {
  const root = await realpath(dir);
  const scanner = new Scanner(root, dir);
  const kubefilePath = join(dir, 'Kubefile');
  const warnings: string[] = [];
  const refs: ContextRef[] = [];
  if (!(await exists(kubefilePath))) {
    for (const name of [...SCANNED_DESTINATIONS, 'imageList']) {
      if (await exists(join(dir, name))) refs.push(...(await scanner.scan(name)));
    }
    return { refs: dedupe(refs), warnings };
  }
  const kubefile = parseKubefile(await readText(kubefilePath), { buildArgs: opts.buildArgs, file: kubefilePath });
  if (opts.includeBase) for (const base of kubefile.bases) refs.push({ ref: base.ref, source: `${kubefilePath}:${base.line} (FROM)` });
  warnings.push(...kubefile.notFollowed);
  if (kubefile.unusedBuildArgs.length) warnings.push(`${kubefilePath}: --build-arg ${kubefile.unusedBuildArgs.join(', ')} not declared by any ARG`);
  for (const copy of kubefile.copies) {
    const toRoot = isRootDestination(copy.dest);
    if (!toRoot && !isScannedDestination(copy.dest)) continue;
    for (const src of copy.sources) {
      const rel = contextPath(src, `${kubefilePath}:${copy.line}`);
      const matches = hasMagic(rel) ? expandGlob(dir, rel) : [rel];
      if (matches.length === 0) throw new InvalidInputError(`${kubefilePath}:${copy.line}: ${copy.keyword} source ${src} matches nothing in the build context`);
      for (const m of matches) {
        if (!(await exists(join(dir, m)))) throw new InvalidInputError(`${kubefilePath}:${copy.line}: ${copy.keyword} source ${src} is not in the build context ${dir}`);
        if (!toRoot) refs.push(...(await scanner.scan(m, singleFileName(copy.dest))));
        else for (const name of await copiedToRoot(dir, m)) refs.push(...(await scanner.scan(name)));
      }
    }
  }
  return { refs: dedupe(refs), warnings };
}

/** `manifests`, `./charts/`, `/manifests/app`: destinations sealer scans. */
function isScannedDestination(dest: string): boolean {
  const first = posix.normalize(dest.replace(/^\/+/, '')).split('/')[0]!;
  return SCANNED_DESTINATIONS.includes(first);
}

/** `.`, `/`, `./`: the image's root, where a copied directory's manifests/ and charts/ land as they are. */
function isRootDestination(dest: string): boolean {
  return posix.normalize(dest.replace(/^\/+/, '') || '.') === '.' || dest.replace(/^\/+/, '') === '';
}

/** What of a source copied to the root sealer scans: a directory's own manifests/ and charts/ (its contents land in the root). */
async function copiedToRoot(dir: string, rel: string): Promise<string[]> {
  if (!(await stat(join(dir, rel))).isDirectory()) return [];
  const out: string[] = [];
  for (const name of SCANNED_DESTINATIONS) {
    const child = rel ? `${rel}/${name}` : name;
    if (await exists(join(dir, child))) out.push(child);
  }
  return out;
}

/** A copied file's new name when the destination names a file (`COPY list.txt manifests/imageList`). */
function singleFileName(dest: string): string | undefined {
  if (dest.endsWith('/')) return undefined;
  const parts = posix.normalize(dest.replace(/^\/+/, '')).split('/');
  return parts.length > 1 ? parts[parts.length - 1] : undefined;
}

/** A COPY source as a path inside the context; `..` out of it is refused (docker refuses it too). */
function contextPath(src: string, where: string): string {
  const rel = posix.normalize(src.replace(/^\/+/, ''));
  if (rel === '..' || rel.startsWith('../')) throw new InvalidInputError(`${where}: COPY source ${src} is outside the build context`);
  return rel === '.' ? '' : rel.replace(/\/$/, '');
}

class Scanner {
  private entries = 0;
  constructor(
    private readonly realRoot: string,
    private readonly root: string,
  ) {}

  /** Images of one path inside the context: a chart, a YAML file, an imageList, or a directory of them. */
  async scan(rel: string, nameAs?: string, depth = 0): Promise<ContextRef[]> {
    if (depth > MAX_SCAN_DEPTH) throw new OcisaveError('LIMIT', `${join(this.root, rel)}: directories nested deeper than ${MAX_SCAN_DEPTH}`);
    if (++this.entries > MAX_SCAN_ENTRIES) throw new OcisaveError('LIMIT', `${this.root}: more than ${MAX_SCAN_ENTRIES} files to scan in the build context`);
    const path = join(this.root, rel);
    await this.inside(path);
    const st = await stat(path);
    const name = nameAs ?? basename(path);
    if (st.isDirectory()) {
      if (await exists(join(path, 'Chart.yaml'))) return chartImages(path);
      const out: ContextRef[] = [];
      for (const child of (await readdir(path)).sort()) out.push(...(await this.scan(rel ? `${rel}/${child}` : child, undefined, depth + 1)));
      return out;
    }
    if (!st.isFile()) return [];
    if (name === 'imageList') return parseImageList(await readText(path), path);
    if (/\.(tgz|tar\.gz)$/i.test(name)) return chartImages(path);
    if (/\.ya?ml$/i.test(name)) return yamlImages(await readText(path), path);
    return [];
  }

  /** The real path (links resolved) must lie inside the context's real path. */
  private async inside(path: string): Promise<void> {
    const real = await realpath(path);
    if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) throw new InvalidInputError(`${path} leads outside the build context ${this.root}; refusing to read it`);
  }
}

async function chartImages(path: string): Promise<ContextRef[]> {
  const { readHelmChart } = await import('./helm.js');
  return (await readHelmChart(path)).map(({ ref, source }) => ({ ref, source }));
}

/** Pod images of Kubernetes YAML; YAML that is not Kubernetes (values files, kustomization) has none. */
async function yamlImages(text: string, path: string): Promise<ContextRef[]> {
  const kube = await import('./kube.js');
  const kind = kube.detectTextKind(text, path);
  if (kind.kind !== 'kube') return [];
  return kube.findKubeImages(kind.parsed, path).map(({ ref, source }) => ({ ref, source }));
}

async function readText(path: string): Promise<string> {
  const st = await stat(path);
  if (st.size > MAX_TEXT_BYTES) throw new OcisaveError('LIMIT', `${path} is larger than ${MAX_TEXT_BYTES} bytes; not a manifest or image list`);
  return readFile(path, 'utf8');
}

/** Whether `path` exists (following links, as the readers that open it do). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
