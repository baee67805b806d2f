// `ocisave unpack REF DIR`: fetch one image (through the shared cache) and unpack its root
// filesystem into DIR, as `umoci unpack --rootless` would lay it out (rootfs only, no bundle).
import { Command } from 'commander';
import { EngineEvents } from '../util/events.js';
import { fetchImages as defaultFetchImages, type FetchOptions, type FetchResult } from '../engine/pipeline.js';
import { formatReference } from '../ref/reference.js';
import { addFetchOptions, networkFrom, netLimitsFrom, credentialsFrom, defaultPlatform, platformsFrom, referenceArg, type CommonFlags } from './options.js';
import { createRenderer, progressMode } from './render.js';
import { registriesOf } from './save.js';

interface UnpackFlags extends CommonFlags {
  force?: boolean;
  offline?: boolean;
}

export interface UnpackDeps {
  /** The library call that resolves and downloads; tests may pass their own. */
  fetchImages?: (inputs: string[], opts: FetchOptions) => Promise<FetchResult>;
  stdout?: NodeJS.WritableStream;
}

export function unpackCommand(deps: UnpackDeps = {}): Command {
  const fetchImages = deps.fetchImages ?? defaultFetchImages;
  const stdout = deps.stdout ?? process.stdout;
  const cmd = new Command('unpack')
    .description("unpack an image's root filesystem into a directory (layers in order, overlay whiteouts applied)")
    .argument('<reference>', 'image reference: nginx:1.25, host:port/repo/name:tag, name@sha256:…', referenceArg)
    .argument('<dir>', 'directory to create (must be absent or empty unless --force)')
    .option('--force', 'replace DIR if it is not empty (only once the new tree is complete)')
    .option('--offline', 'use only the cache: the tag as an earlier run resolved it');
  addFetchOptions(cmd);
  cmd.action(async (reference: string, dir: string, flags: UnpackFlags) => {
    const events = new EngineEvents().on(createRenderer(progressMode(!!flags.json, !!flags.quiet)));
    // One root filesystem: the host's platform unless told otherwise, as docker pull does.
    const platforms = platformsFrom(flags, defaultPlatform());
    const fetched = await fetchImages([reference], {
      platforms,
      cacheDir: flags.cache,
      plainHttp: flags.plainHttp,
      ...networkFrom(flags),
      limits: netLimitsFrom(flags),
      jobs: flags.jobs,
      fixedJobs: flags.fixedJobs,
      hasher: flags.hasher,
      offline: flags.offline,
      credentials: await credentialsFrom(flags, registriesOf([reference])),
      events,
    });
    try {
      const image = fetched.graph.images[0];
      if (!image) {
        const why = fetched.graph.failures.map((f) => `${f.input}: ${f.error}`).join('; ');
        throw new Error(`${reference}: nothing to unpack${why ? ` (${why})` : ''}`);
      }
      const started = Date.now();
      const { unpackImage } = await import('../link/rootfs.js');
      const result = await unpackImage({
        image,
        cache: fetched.cache,
        out: dir,
        replace: flags.force,
        onWarning: (message) => events.emit({ type: 'warning', message }),
      });
      const summary = { reference: formatReference(image.ref), manifest: result.manifest, layers: result.layers, path: result.path, warnings: result.warnings.length, seconds: (Date.now() - started) / 1000 };
      stdout.write(
        flags.json
          ? `${JSON.stringify(summary)}\n`
          : `unpacked ${summary.reference} (${result.manifest}, ${result.layers} layers) into ${result.path}${result.warnings.length ? `, ${result.warnings.length} warnings` : ''}\n`,
      );
    } finally {
      await fetched.close();
    }
  });
  return cmd;
}
