// `ocisave merge A B... -o OUT`: registry layouts into one (sharded saves → one bundle).
import { Command } from 'commander';
import type { MergeReport } from '../bundle/merge.js';
import { SCHEMAS, versioned } from '../api/schema.js';

function mergeText(r: MergeReport): string {
  return (
    `merged ${r.inputs.length} layouts into ${r.output} in ${r.seconds.toFixed(1)} s: ${r.repositories} repositories, ${r.tags} tags; ` +
    `blobs ${r.blobs.linked} hard-linked, ${r.blobs.copied} copied, ${r.blobs.shared} in more than one input; ${r.links} link files`
  );
}

export function mergeCommand(): Command {
  return new Command('merge')
    .description('merge registry layouts (e.g. the shards of a sharded save) into one, verifying each input')
    .argument('<layouts...>', 'registry layouts (save --format registry)')
    .requiredOption('-o, --output <path>', 'the merged layout (must not exist)')
    .option('--json', 'the result as JSON on stdout')
    .action(async (layouts: string[], flags: { output: string; json?: boolean }) => {
      const { mergeLayouts } = await import('../bundle/merge.js');
      const report = versioned(SCHEMAS.merge, await mergeLayouts(layouts, flags.output));
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : `${mergeText(report)}\n`);
    });
}
