// `ocisave verify BUNDLE`: re-hash every blob and follow every link offline; exit 1 when
// anything is missing or corrupt.
import { Command } from 'commander';
import type { VerifyReport } from '../bundle/verify.js';
import { positiveInt } from './options.js';
import { formatBytes } from './render.js';

interface VerifyFlags {
  json?: boolean;
  since?: string;
  jobs?: number;
  quiet?: boolean;
}

function verifyText(r: VerifyReport, quiet: boolean): string {
  const lines: string[] = [];
  for (const p of r.problems) lines.push(`${p.kind}: ${p.message}`);
  if (!quiet) for (const n of r.notes) lines.push(`note: ${n}`);
  lines.push(
    `${r.ok ? 'ok' : 'FAILED'}: ${r.format} bundle ${r.bundle}: ${r.repositories} repositories, ${r.tags} tags, ${r.manifests} manifests, ` +
      `${r.blobs.checked} blobs re-hashed (${formatBytes(r.blobs.bytes)}) in ${r.seconds.toFixed(1)} s` +
      (r.ok ? '' : `; ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`),
  );
  return lines.join('\n');
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description('check a saved bundle offline: re-hash every blob, follow every link, manifest and tag')
    .argument('<bundle>', 'bundle directory or archive')
    .option('--since <base>', 'the base bundle of a delta (save --since): blobs it holds count as present')
    .option('-j, --jobs <n>', 'files hashed at once (default 4)', positiveInt)
    .option('--json', 'the report as JSON on stdout')
    .option('-q, --quiet', 'problems and the verdict only')
    .action(async (bundle: string, flags: VerifyFlags) => {
      const { verify } = await import('../api/verify.js');
      const report = await verify({ bundle, since: flags.since, jobs: flags.jobs });
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : `${verifyText(report, !!flags.quiet)}\n`);
      if (!report.ok) process.exitCode = 1;
    });
}
