// The flags of what save, resolve, mirror and list-images read: reference arguments, -f inputs of
// every kind, and the flags that shape them (build args of a sealer context, tag sets). Collecting
// the inputs is the library's (src/api/inputs.ts).
import { Command, InvalidArgumentError } from 'commander';
import type { InputOptions } from '../api/inputs.js';
import { checkSelector } from '../resolve/tags.js';
import { positiveInt, referenceArgs } from './options.js';

/** The input-shaping flags, named as the library's options. */
export type InputFlags = Pick<InputOptions, 'buildArg' | 'includeBase' | 'allTags' | 'tagRegex' | 'tagSemver' | 'newest'>;

function buildArg(value: string, prev: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected NAME=VALUE');
  return { ...prev, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** The reference arguments and the repeatable -f inputs of save, resolve and mirror. */
export function addReferenceInputs(cmd: Command): Command {
  return cmd
    .argument('[references...]', 'image references: nginx:1.25, host:port/repo/name:tag, name@sha256:…', referenceArgs, [])
    .option('-f, --file <path>', 'image list, Kubernetes YAML, Helm chart (dir or .tgz), sealer build context (dir or Kubefile), skopeo sync YAML or lock file; repeatable', (v: string, prev: string[] = []) => [...prev, v]);
}

/** --build-arg and --include-base (sealer build contexts). */
export function addContextOptions(cmd: Command): Command {
  return cmd
    .option('--build-arg <name=value>', "sealer build contexts: value of a Kubefile ARG; repeatable", buildArg)
    .option('--include-base', "sealer build contexts: also the Kubefile's FROM image (a cluster image)");
}

/** A flag's rule checked as commander parses it, so a bad one is a usage error (exit 2). */
function rule(kind: 'regex' | 'semver') {
  return (value: string): string => {
    try {
      checkSelector({ [kind]: value }, `--tag-${kind}`);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
    return value;
  };
}

/** Tag-set flags, named after skopeo sync's YAML keys; they apply to reference arguments given without a tag or digest. */
export function addTagSetOptions(cmd: Command): Command {
  return cmd
    .option('--all-tags', 'every tag of each repository given without a tag (skopeo sync: images: {repo: []})')
    .option('--tag-regex <regex>', 'the tags of each repository given without a tag that match this regex (skopeo sync: images-by-tag-regex)', rule('regex'))
    .option('--tag-semver <range>', 'the tags of each repository given without a tag that are versions in this range (skopeo sync: images-by-semver)', rule('semver'))
    .option('--newest <n>', 'of the tags selected (every tag by default), the N highest versions', positiveInt);
}

/** The input arguments and flags as the library's input options. */
export function inputOptionsFrom(args: string[], flags: InputFlags & { file?: string[] }): InputOptions {
  const { buildArg, includeBase, allTags, tagRegex, tagSemver, newest } = flags;
  return { references: args, file: flags.file, buildArg, includeBase, allTags, tagRegex, tagSemver, newest };
}
