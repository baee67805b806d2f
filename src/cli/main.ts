#!/usr/bin/env node
// The ocisave command line: one module per command, each a thin layer over the library. A command
// module defines its flags and imports its library call only when its action runs, so --version,
// --help and usage errors load commander and little else (~0.5 CPU-s less than loading undici,
// lmdb, piscina... for each of them; test/startup.test.ts keeps it so).
import { Command, CommanderError } from 'commander';
import { describeFailure, InterruptedError, SaveError } from '../engine/errors.js';
import { setDownloadFlags } from '../engine/v8-flags.js';
import { commitCause, describeWriteError } from '../cache/write-error.js';
import { UsageError } from '../util/errors.js';
import { saveCommand } from './save.js';
import { resolveCommand } from './resolve.js';
import { listImagesCommand } from './list-images.js';
import { pushCommand } from './push.js';
import { mirrorCommand } from './mirror.js';
import { mergeCommand } from './merge.js';
import { convertCommand } from './convert.js';
import { serveCommand } from './serve.js';
import { verifyCommand } from './verify.js';
import { cacheCommand } from './cache.js';
import { unpackCommand } from './unpack.js';

const program = new Command('ocisave')
  .description('save container images and OCI artifacts from registries to disk')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

program.addCommand(saveCommand());
program.addCommand(resolveCommand());
program.addCommand(listImagesCommand());
program.addCommand(pushCommand());
program.addCommand(mirrorCommand());
program.addCommand(mergeCommand());
program.addCommand(convertCommand());
program.addCommand(serveCommand());
program.addCommand(verifyCommand());
program.addCommand(cacheCommand());
program.addCommand(unpackCommand());

// Commands that talk to registries (those with --plain-http) set V8's flags for downloading
// before any action runs: before the first connection compiles llhttp and before the download
// threads start (engine/v8-flags.ts).
program.hook('preAction', async (_program, action) => {
  if (!action.options.some((o) => o.long === '--plain-http')) return;
  await setDownloadFlags(action.opts().hasher === 'wasm' ? 'wasm' : 'node');
});

// Subcommands do not inherit these: usage errors anywhere exit 2 with help, not 1.
const inherit = (cmd: Command) => {
  for (const sub of cmd.commands) {
    sub.showHelpAfterError().exitOverride();
    inherit(sub);
  }
};
inherit(program);

// A failure nothing waits for any more (an LMDB commit refused by a full disk): one line and exit
// 1, not a stack trace. The cache stays usable: only verified blobs are ever named complete.
process.on('unhandledRejection', async (err) => {
  const e = describeWriteError(await commitCause(err), 'the cache index (index.lmdb)') as Error;
  process.stderr.write(`ocisave: error: ${e?.message ?? String(err)}\n`);
  process.exit(1);
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof SaveError) {
    for (const f of err.failures) process.stderr.write(`ocisave: error: ${describeFailure(f)}\n`);
    process.stderr.write('ocisave: nothing was written; what was downloaded stays in the cache for the next run (or use --keep-going)\n');
    process.exitCode = 1;
  } else if (err instanceof UsageError) {
    process.stderr.write(`ocisave: error: ${err.message}\n`);
    process.exitCode = 2;
  } else if (err instanceof InterruptedError) {
    process.stderr.write(`ocisave: ${err.message}\n`);
    process.exitCode = 130;
  } else {
    process.stderr.write(`ocisave: error: ${(err as Error).message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
