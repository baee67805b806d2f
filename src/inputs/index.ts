// One entry point for every kind of reference input a user can hand us.
import { open, readFile, stat } from 'node:fs/promises';
import { TextDecoder } from 'node:util';
import { basename, dirname, join } from 'node:path';
import type { Credential } from '../registry/credentials.js';
import type { HostOptionsMap } from '../registry/host-options.js';
import type { TagSetRequest } from '../resolve/tags.js';
import { exists, isBuildContext, type BuildContextOptions } from './build-context.js';
import { dedupe, parseImageList } from './imagelist.js';
import { InvalidInputError, OcisaveError, inputError } from '../util/errors.js';

export interface InputRef {
  /** Raw reference string as written; normalise it with src/ref. */
  ref: string;
  /** Where it came from: "file:line", "chart/values.yaml (.image)", … */
  source: string;
}

/** Everything one input file or directory contributes. */
export interface InputSet {
  refs: InputRef[];
  /** Repositories whose tags are listed and selected on the registry (skopeo sync YAML rules, `images: {repo: []}`). */
  tagSets: TagSetRequest[];
  /** Per-registry credentials the input carries (sync YAML); never printed. */
  credentials: Map<string, Credential>;
  /** Per-registry TLS settings the input carries (sync YAML tls-verify, cert-dir). */
  hostOptions: HostOptionsMap;
  /** What was read but not followed (Kubefile RUN/CMD lines, COPY from URLs …), one line each. */
  warnings: string[];
}

export type ReadInputOptions = BuildContextOptions;

/** References only (tag sets, credentials and warnings of the input dropped); see readInputs. */
export async function readReferenceInputs(path: string, opts: ReadInputOptions = {}): Promise<InputRef[]> {
  return (await readInputs(path, opts)).refs;
}

/**
 * Reads an input file or directory, detecting its kind: a directory with Chart.yaml → Helm chart;
 * a sealer build context (a directory with a Kubefile, manifests/, charts/ or imageList, or the
 * Kubefile itself) → the images it would build in; a .tgz/.tar.gz (or any gzip file) → packaged
 * Helm chart; a skopeo sync YAML source → its images, tag rules, credentials and TLS settings;
 * other YAML whose documents are mappings → Kubernetes manifests; anything else → an image list.
 * Duplicates are dropped, first seen kept.
 */
export async function readInputs(path: string, opts: ReadInputOptions = {}): Promise<InputSet> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw inputError(`cannot read references from ${path}: ${(err as Error).message}`, err);
  }
  if (st.isDirectory()) {
    if (await exists(join(path, 'Chart.yaml'))) return only(await readChart(path));
    if (await isBuildContext(path)) return readContext(path, opts);
    throw new InvalidInputError(`${path} is a directory without Chart.yaml, Kubefile, manifests/, charts/ or imageList; expected a Helm chart, a sealer build context, an image list or a YAML file`);
  }
  if (basename(path) === 'Kubefile') return readContext(dirname(path), opts);
  if (/\.(tgz|tar\.gz)$/i.test(path) || (await isGzip(path))) return only(await readChart(path));

  const text = await readTextInput(path, st.size);
  // The YAML parser (and its ~50 ms of loading) is only needed for text that could be a mapping.
  if (couldBeYamlMapping(text)) {
    const kube = await import('./kube.js');
    const kind = kube.detectTextKind(text, path);
    if (kind.kind === 'kube') {
      const sync = await import('./sync-yaml.js');
      if (sync.isSyncYaml(kind.parsed)) {
        const found = sync.readSyncYaml(kind.parsed, path);
        return { ...found, refs: dedupe(found.refs), warnings: [] };
      }
      return only(strip(dedupe(kube.findKubeImages(kind.parsed, path))));
    }
  }
  return only(strip(dedupe(parseImageList(text, path))));
}

function only(refs: InputRef[]): InputSet {
  return { refs, tagSets: [], credentials: new Map(), hostOptions: {}, warnings: [] };
}

async function readContext(dir: string, opts: ReadInputOptions): Promise<InputSet> {
  const { readBuildContext } = await import('./build-context.js');
  const { refs, warnings } = await readBuildContext(dir, opts);
  return { ...only(strip(refs)), warnings };
}


/** An image list or YAML larger than this is not one (64 MiB, as for lock files). */
export const MAX_TEXT_INPUT_BYTES = 64 * 1024 * 1024;
/** How much of a file is looked at to tell text from binary (git looks at 8,000 bytes). */
const SNIFF_BYTES = 8 * 1024;

/**
 * The text of an image list or YAML file; a file that is not text (a NUL byte or invalid UTF-8 in
 * its first 8 KiB, as git's and grep's binary checks) is refused in one line, instead of every
 * "line" of it being echoed back as an invalid reference.
 */
async function readTextInput(path: string, size: number): Promise<string> {
  const kind = 'expected an image list, Kubernetes YAML, a Helm chart (directory or .tgz) or a lock file';
  if (size > MAX_TEXT_INPUT_BYTES) throw new OcisaveError('LIMIT', `${path} is ${size} bytes, more than an image list or YAML file may be (${MAX_TEXT_INPUT_BYTES}); ${kind}`);
  const data = await readFile(path);
  const head = data.subarray(0, SNIFF_BYTES);
  const nul = head.indexOf(0);
  if (nul >= 0) throw new InvalidInputError(`${path} is not a text file (NUL byte at offset ${nul}); ${kind}`);
  try {
    // stream: a character cut at the end of the sniffed bytes is not an error.
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: true });
  } catch {
    throw new InvalidInputError(`${path} is not a text file (invalid UTF-8 in its first ${SNIFF_BYTES} bytes); ${kind}`);
  }
  return data.toString('utf8');
}

/**
 * Image lists are never YAML mappings: a reference has no ": ", no key ending a line, no flow
 * braces, no "? " complex key. Text with none of those is an image list without parsing it as YAML.
 */
function couldBeYamlMapping(text: string): boolean {
  return /:(\s|$)|[{}]|^\s*\?(\s|$)/m.test(text);
}

/** A Helm chart's references; the chart reader (and tar-stream, yaml) loads only when a chart is given. */
async function readChart(path: string): Promise<InputRef[]> {
  return strip(await (await import('./helm.js')).readHelmChart(path));
}

async function isGzip(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const { bytesRead, buffer } = await fh.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

function strip(refs: { ref: string; source: string }[]): InputRef[] {
  return refs.map(({ ref, source }) => ({ ref, source }));
}
