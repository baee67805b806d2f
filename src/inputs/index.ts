// One entry point for every kind of reference input a user can hand us.
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isMap } from 'yaml';
import { parseImageList } from './imagelist.js';
import { dedupe, readHelmChart } from './helm.js';
import { findKubeImages, hasKubeDocuments, parseYamlDocuments, type ParsedYaml } from './kube.js';

export { parseImageList, readImageList, looksLikeImageRef, type ImageListEntry } from './imagelist.js';
export { parseKubeYaml, readKubeYaml, type KubeImageRef } from './kube.js';
export { readHelmChart, type HelmImageRef } from './helm.js';

export interface InputRef {
  /** Raw reference string as written; normalise it with src/ref. */
  ref: string;
  /** Where it came from: "file:line", "chart/values.yaml (.image)", … */
  source: string;
}

/**
 * Reads references from a file or directory, detecting its kind:
 * a directory with Chart.yaml → Helm chart; a .tgz/.tar.gz (or any gzip file)
 * → packaged Helm chart; YAML whose documents are mappings → Kubernetes
 * manifests; anything else → an image list. Duplicates are dropped, first seen kept.
 */
export async function readReferenceInputs(path: string): Promise<InputRef[]> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new Error(`cannot read references from ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (st.isDirectory()) {
    try {
      await stat(join(path, 'Chart.yaml'));
    } catch {
      throw new Error(`${path} is a directory without Chart.yaml; expected a Helm chart directory, an image list or a YAML file`);
    }
    return strip(await readHelmChart(path));
  }
  if (/\.(tgz|tar\.gz)$/i.test(path) || (await isGzip(path))) return strip(await readHelmChart(path));

  const text = await readFile(path, 'utf8');
  const kind = detectTextKind(text, path);
  if (kind.kind === 'kube') return strip(dedupe(findKubeImages(kind.parsed, path)));
  return strip(dedupe(parseImageList(text, path)));
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

/**
 * Image lists are never YAML mappings (a reference has no ": "), so any
 * mapping document means Kubernetes YAML. A file that fails to parse is still
 * Kubernetes YAML when it has apiVersion/kind lines: then the syntax error is
 * what the user needs to see, not a list of bogus references.
 */
export function detectTextKind(text: string, file: string): { kind: 'kube'; parsed: ParsedYaml } | { kind: 'imagelist' } {
  let parsed: ParsedYaml;
  try {
    parsed = parseYamlDocuments(text, file);
  } catch (err) {
    if (/^(apiVersion|kind)\s*:/m.test(text)) throw err;
    return { kind: 'imagelist' };
  }
  // A mapping without apiVersion/kind (a bare pod spec, a List fragment) is still walked for pod specs.
  if (hasKubeDocuments(parsed) || parsed.docs.some((d) => isMap(d.contents))) return { kind: 'kube', parsed };
  return { kind: 'imagelist' };
}

function strip(refs: { ref: string; source: string }[]): InputRef[] {
  return refs.map(({ ref, source }) => ({ ref, source }));
}
