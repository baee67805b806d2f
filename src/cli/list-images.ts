// `ocisave list-images PATH...`: what `save -f PATH` would save — image lists, Kubernetes YAML, Helm
// charts (directory or .tgz), sealer build contexts, skopeo sync YAML and lock files, one normalised
// reference a line (`--json`: with where each was found). No registry is asked, except to list the
// tags of a sync YAML's tag rules (`images: {repo: []}`, images-by-tag-regex, images-by-semver).
// Bad references are reported with their source and make the exit status 1; the good ones are
// still listed. What an input holds but is not followed (Kubefile RUN lines …) is a warning.
import { Command } from 'commander';
import { addContextOptions, type InputFlags } from './inputs.js';

interface ListFlags extends InputFlags {
  json?: boolean;
  plainHttp?: boolean;
}

export function listImagesCommand(): Command {
  const cmd = new Command('list-images')
    .description('print the image references image lists, Kubernetes YAML, Helm charts, sealer build contexts, skopeo sync YAML and lock files name (what save -f would save)')
    .argument('<paths...>', 'image list, Kubernetes YAML, Helm chart (dir or .tgz), sealer build context (dir or Kubefile), skopeo sync YAML or lock file')
    .option('--json', 'JSON on stdout: each reference with its sources, and any errors and warnings')
    .option('--plain-http', 'talk plain HTTP to registries whose tags a sync YAML lists (loopback registries always use it)');
  addContextOptions(cmd);
  cmd.action(async (paths: string[], flags: ListFlags) => {
    const { listImages } = await import('../api/list-images.js');
    const result = await listImages({ paths, buildArg: flags.buildArg, includeBase: flags.includeBase, plainHttp: flags.plainHttp });
    if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else for (const image of result.images) process.stdout.write(`${image.reference}\n`);
    if (!flags.json) for (const w of result.warnings) process.stderr.write(`ocisave: warning: ${w}\n`);
    for (const e of result.errors) process.stderr.write(`ocisave: error: ${e.source}: ${e.error}\n`);
    if (result.errors.length) process.exitCode = 1;
  });
  return cmd;
}
