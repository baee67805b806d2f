#!/usr/bin/env node
// The ocisave command line: one module per command, each a thin layer over the library.
import { Command, CommanderError } from 'commander';
import { describeFailure, SaveError } from '../engine/pipeline.js';
import { saveCommand } from './save.js';
import { summaryText } from './render.js';

const program = new Command('ocisave')
  .description('save container images and OCI artifacts from registries to disk')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride();

program.addCommand(saveCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else if (err instanceof SaveError) {
    for (const f of err.failures) process.stderr.write(`ocisave: error: ${describeFailure(f)}\n`);
    if (err.summary) process.stderr.write(`${summaryText(err.summary)}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`ocisave: error: ${(err as Error).message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
