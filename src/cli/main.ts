#!/usr/bin/env node
// The ocisave command line: one module per command, each a thin layer over the library. A command
// module defines its flags and imports its library call only when its action runs, so --version,
// --help and usage errors load commander and little else (~0.5 CPU-s less than loading undici,
// lmdb, piscina... for each of them; test/startup.test.ts keeps it so).
import { setFlagsFromString } from 'node:v8';
import { Command, CommanderError } from 'commander';
import { describeFailure, InterruptedError, SaveError } from '../engine/errors.js';
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

// undici parses HTTP with llhttp compiled to WebAssembly, once per thread. V8 compiles it with
// Liftoff, then again with TurboFan on background threads: ~0.4 CPU-s of a warm save of the
// medium fleet (1.81 → 1.44 CPU-s into a new output, 1.35 → 0.96 into the same; bench/README.md),
// which on 2 cores is wall time; a cold save costs no more without it. hash-wasm's sha256 runs
// ~10x slower on Liftoff's code, so --hasher wasm keeps TurboFan. The flag is process-wide: set
// before any action runs, so before the first connection compiles llhttp, and the download
// threads inherit it. Only commands that talk to registries (those with --plain-http) set it.
// Any change of V8's flags makes it refuse node's built-in code cache, so every node: module
// loaded after this one is compiled from source: the registry client (undici and the node:
// modules it requires) is loaded first (warm save 1.15 → 1.07 CPU-s, 8 rounds; bench/README.md).
program.hook('preAction', async (_program, action) => {
  if (!action.options.some((o) => o.long === '--plain-http')) return;
  await import('../registry/http.js');
  setFlagsFromString(`--initial-old-space-size=${INITIAL_OLD_SPACE_MB}`);
  if (action.opts().hasher !== 'wasm') setFlagsFromString('--liftoff-only');
});

/**
 * V8 starts a heap small and grows it a full mark-compact at a time: a cold save of the medium
 * fleet spent ~0.5 CPU-s of its ~4 in major GCs on background threads (perf) while its heap grew
 * to its working size. Starting the old space larger skips those steps: 32, 64 and 128 MB cost
 * the same CPU within noise, 32 the least peak RSS (bench/README.md, round 4). Set with the flag
 * above, so it costs no second loss of the code cache.
 */
const INITIAL_OLD_SPACE_MB = 32;

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
