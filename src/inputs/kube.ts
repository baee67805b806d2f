// Kubernetes manifests → the `image:` of every container they would run.
import {
  Document,
  LineCounter,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  parseAllDocuments,
  visit,
  type Node as YamlNode,
  type YAMLMap,
} from 'yaml';
import { InvalidInputError } from '../util/errors.js';

export interface KubeImageRef {
  ref: string;
  /** 1-based line of the `image:` value. */
  line: number;
  /** "file:line". */
  source: string;
}

export interface ParsedYaml {
  docs: Document.Parsed[];
  lineCounter: LineCounter;
}

/**
 * Parses every document of a YAML stream. A syntax error throws naming the file,
 * line and column. The message is rebuilt from the parser's first line only:
 * the parser appends the offending source line, and manifests can hold Secrets.
 */
export function parseYamlDocuments(text: string, file: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true });
  // parseAllDocuments returns an EmptyStream (an array) for empty input.
  const list = (Array.isArray(docs) ? docs : [docs]) as Document.Parsed[];
  for (const doc of list) {
    const err = doc.errors[0];
    if (!err) continue;
    const pos = err.linePos?.[0] ?? lineCounter.linePos(err.pos[0]);
    const what = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '').replace(/:$/, '');
    throw new InvalidInputError(`${file}:${pos.line}:${pos.col}: YAML syntax error: ${what}`, { cause: err });
  }
  // The parser accepts an alias whose anchor is missing (or in another
  // document) and resolves it to nothing; Kubernetes rejects the file.
  for (const doc of list) {
    visit(doc, {
      Alias(_key, node) {
        if (node.resolve(doc) !== undefined) return;
        const pos = lineCounter.linePos(node.range?.[0] ?? 0);
        throw new InvalidInputError(`${file}:${pos.line}:${pos.col}: YAML syntax error: alias *${node.source} has no anchor &${node.source} in this document`);
      },
    });
  }
  return { docs: list, lineCounter };
}

/**
 * The text of a scalar as a string. YAML turns `tag: 8.0` into the number 8 and
 * `tag: 1.10` into 1.1; image tags are strings, so for non-string scalars we use
 * the source text the parser kept. Null, booleans and collections → undefined.
 */
export function scalarText(node: unknown): string | undefined {
  if (!isScalar(node)) return undefined;
  const v = node.value;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return node.source ?? String(v);
  return undefined;
}

/** Value of `key` in a YAML map node, following aliases. */
export function mapGet(map: YAMLMap, key: string, doc: Document): unknown {
  for (const pair of map.items) {
    if (isScalar(pair.key) && String(pair.key.value) === key) return deref(pair.value, doc);
  }
  return undefined;
}

export function deref(node: unknown, doc: Document): unknown {
  // Alias chains are finite: the parser only lets an alias point at an anchor defined before it.
  let n = node;
  for (let i = 0; i < 100 && isAlias(n); i++) n = n.resolve(doc);
  return n;
}

const CONTAINER_LISTS = ['containers', 'initContainers', 'ephemeralContainers'];

/**
 * Finds the images of every pod spec in a parsed stream. Rather than knowing
 * where each workload kind keeps its pod template (Deployment, CronJob's
 * jobTemplate, List items, custom resources…), it walks the whole tree and
 * treats any mapping with a container list as a pod spec.
 */
export function findKubeImages(parsed: ParsedYaml, file: string): KubeImageRef[] {
  const out: KubeImageRef[] = [];
  for (const doc of parsed.docs) {
    // Documents that are not mappings (scalars, lists of strings, empty) hold no pods.
    const root = deref(doc.contents, doc);
    if (!isMap(root)) continue;
    // Each node is visited once, which also defuses alias "billion laughs".
    const seen = new Set<unknown>();
    const visit = (node: unknown): void => {
      node = deref(node, doc);
      if (seen.has(node)) return;
      seen.add(node);
      if (isSeq(node)) {
        for (const item of node.items) visit(item);
      } else if (isMap(node)) {
        for (const listKey of CONTAINER_LISTS) {
          const list = mapGet(node, listKey, doc);
          if (!isSeq(list)) continue;
          for (const c of list.items) {
            const container = deref(c, doc);
            if (!isMap(container)) continue;
            const image = mapGet(container, 'image', doc);
            const ref = scalarText(image)?.trim();
            if (!ref) continue;
            const line = parsed.lineCounter.linePos((image as YamlNode).range?.[0] ?? 0).line;
            out.push({ ref, line, source: `${file}:${line}` });
          }
        }
        for (const pair of node.items) if (isPair(pair)) visit(pair.value);
      }
    };
    visit(root);
  }
  return out;
}

/** True when some document of the stream is a mapping with `apiVersion` or `kind`. */
export function hasKubeDocuments(parsed: ParsedYaml): boolean {
  return parsed.docs.some((doc) => {
    const root = deref(doc.contents, doc);
    return isMap(root) && (mapGet(root, 'apiVersion', doc) !== undefined || mapGet(root, 'kind', doc) !== undefined);
  });
}

export function parseKubeYaml(text: string, file = '<input>'): KubeImageRef[] {
  return findKubeImages(parseYamlDocuments(text, file), file);
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
