// `ocisave unpack REF DIR`: fetch one image (through the shared cache) and unpack its root
// filesystem into DIR, as `umoci unpack --rootless` would lay it out (rootfs only, no bundle).
import { Command } from 'commander';
import { addFetchOptions, fetchRequestFrom, referenceArg, type CommonFlags } from './options.js';
import { createRenderer, progressMode } from './render.js';

interface UnpackFlags extends CommonFlags {
  force?: boolean;
  offline?: boolean;
}

export interface UnpackDeps {
  stdout?: NodeJS.WritableStream;
}

export function unpackCommand(deps: UnpackDeps = {}): Command {
  const stdout = deps.stdout ?? process.stdout;
  const cmd = new Command('unpack')
    .description("unpack an image's root filesystem into a directory (layers in order, overlay whiteouts applied)")
    .argument('<reference>', 'image reference: nginx:1.25, host:port/repo/name:tag, name@sha256:…', referenceArg)
    .argument('<dir>', 'directory to create (must be absent or empty unless --force)')
    .option('--force', 'replace DIR if it is not empty (only once the new tree is complete)')
    .option('--offline', 'use only the cache: the tag as an earlier run resolved it');
  addFetchOptions(cmd);
  cmd.action(async (reference: string, dir: string, flags: UnpackFlags) => {
    const { unpack } = await import('../api/unpack.js');
    const request = await fetchRequestFrom(flags, createRenderer(progressMode(!!flags.json, !!flags.quiet)));
    const r = await unpack({ ...request, offline: flags.offline, reference, out: dir, replace: flags.force });
    stdout.write(flags.json ? `${JSON.stringify(r)}\n` : `unpacked ${r.reference} (${r.manifest}, ${r.layers} layers) into ${r.path}${r.warnings ? `, ${r.warnings} warnings` : ''}\n`);
  });
  return cmd;
}
