// `ocisave convert BUNDLE -o OUT --format F`: a saved bundle to another format, offline.
import { Command, Option } from 'commander';
import { OUTPUT_FORMATS, type OutputFormat } from '../link/index.js';
import { parsePlatformSelector } from '../ref/platform.js';
import type { ConvertResult } from '../api/convert.js';
import { platformArg } from './options.js';

interface ConvertFlags {
  output: string;
  format: OutputFormat;
  platform?: string;
  uncompressed?: boolean;
  preserveDigests?: boolean;
  keepIndex?: boolean;
  json?: boolean;
}

function convertText(r: ConvertResult): string {
  const blobs = `blobs ${r.linked} hard-linked, ${r.copied} copied, ${r.written} files written`;
  return `converted ${r.bundle} (${r.from}) to ${r.path} (${r.format}) in ${r.seconds.toFixed(1)} s: ${r.images.length} images; ${blobs}`;
}

export function convertCommand(): Command {
  const cmd: Command = new Command('convert')
    .description('convert a bundle (registry layout, OCI layout or archive, docker-save tar) to another format, offline')
    .argument('<bundle>', 'the bundle to read')
    .requiredOption('-o, --output <path>', 'where to write the output (outside the bundle)')
    .addOption(new Option('--format <format>', 'output format').choices([...OUTPUT_FORMATS]).default('registry'))
    .option('--platform <list>', "platforms to keep from multi-platform images: os/arch[/variant],… or all (default: all the bundle holds)", platformArg)
    .option('--uncompressed', 'docker format: write uncompressed layers, as docker save does')
    .option('--preserve-digests', 'oci formats: keep docker-typed manifests byte for byte (skopeo 1.9 and umoci cannot read them by name)')
    .option('--keep-index', "oci formats: with one --platform, name the image's index (only that platform inside) instead of the platform's manifest")
    .option('--json', 'the result as JSON on stdout')
    .action(async (bundle: string, flags: ConvertFlags) => {
      // Usage errors: commander prints them with the help and exits 2 (main.ts).
      if (flags.keepIndex && flags.format !== 'oci' && flags.format !== 'oci-archive') cmd.error('error: --keep-index works with --format oci and oci-archive', { exitCode: 2 });
      if (flags.uncompressed && flags.format !== 'docker') cmd.error('error: --uncompressed works with --format docker', { exitCode: 2 });
      const { convert } = await import('../api/convert.js');
      const result = await convert({
        bundle,
        out: flags.output,
        format: flags.format,
        platforms: flags.platform ? parsePlatformSelector(flags.platform) : undefined,
        uncompressed: flags.uncompressed,
        preserveDigests: flags.preserveDigests,
        keepIndex: flags.keepIndex,
        onWarning: (m) => process.stderr.write(`ocisave: warning: ${m}\n`),
      });
      process.stdout.write(flags.json ? `${JSON.stringify(result)}\n` : `${convertText(result)}\n`);
    });
  return cmd;
}
