// `ocisave cache ls|du|verify|prune`: look after the shared blob cache.
import { Command, InvalidArgumentError } from 'commander';
import { parseDuration } from '../cache/duration.js';
import { positiveInt } from './options.js';
import { formatBytes } from './render.js';

interface CacheFlags {
  cache?: string;
  json?: boolean;
}

const when = (ms: number) => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-');
const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

function durationArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function sub(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .option('--cache <dir>', 'blob cache (default: $OCISAVE_CACHE or ~/.cache/ocisave)')
    .option('--json', 'the result as JSON on stdout');
}

export function cacheCommand(): Command {
  const cmd = new Command('cache').description('inspect and look after the blob cache');

  cmd.addCommand(
    sub('ls', 'list cached blobs (size, media type, last use) and partial downloads').action((flags: CacheFlags) =>
      (async () => {
        const { cacheLs } = await import('../api/cache.js');
        const l = await cacheLs({ cacheDir: flags.cache });
        if (flags.json) return out(JSON.stringify(l));
        for (const b of l.blobs) out(`${b.digest}  ${formatBytes(b.size).padStart(9)}  ${when(b.lastUsedAt)}  ${b.mediaType}${b.present ? '' : '  (file missing: run cache verify)'}`);
        for (const p of l.partials) {
          out(`partial ${p.digest}  ${p.segmented ? 'segmented' : `at ${formatBytes(p.offset)}`}${p.fileBytes === undefined ? ' (file missing)' : ''}  ${when(p.updatedAt)}`);
        }
        out(`${l.blobs.length} blobs, ${l.partials.length} partial downloads in ${l.dir}`);
      })(),
    ),
  );

  cmd.addCommand(
    sub('du', 'disk used by the cache').action((flags: CacheFlags) =>
      (async () => {
        const { cacheDu } = await import('../api/cache.js');
        const u = await cacheDu({ cacheDir: flags.cache });
        if (flags.json) return out(JSON.stringify(u));
        out(`blobs     ${String(u.blobs.count).padStart(7)}  ${formatBytes(u.blobs.bytes)}`);
        out(`partials  ${String(u.partials.count).padStart(7)}  ${formatBytes(u.partials.bytes)}`);
        out(`tmp       ${String(u.tmp.count).padStart(7)}  ${formatBytes(u.tmp.bytes)}`);
        out(`index              ${formatBytes(u.index.bytes)}`);
        out(`total              ${formatBytes(u.totalBytes)}  ${u.dir}`);
      })(),
    ),
  );

  cmd.addCommand(
    sub('verify', 're-hash every blob, drop corrupt ones, repair what interrupted downloads left')
      .option('-j, --jobs <n>', 'files hashed at once (default 4)', positiveInt)
      .action((flags: CacheFlags & { jobs?: number }) =>
        (async () => {
          const { cacheVerify } = await import('../api/cache.js');
          const r = await cacheVerify({ cacheDir: flags.cache, jobs: flags.jobs });
          if (flags.json) return out(JSON.stringify(r));
          for (const d of r.corrupt) out(`corrupt, removed: ${d}`);
          for (const d of r.missing) out(`file missing, forgotten: ${d}`);
          for (const d of r.adopted) out(`unindexed but correct, indexed again: ${d}`);
          for (const d of r.removedFiles) out(`stray file removed: blobs/sha256/${d.replace(/^sha256:/, '')}`);
          for (const t of r.partials.truncated) out(`partial ${t.digest}: cut back from ${t.from} to its checkpoint at ${t.to} bytes`);
          for (const d of r.partials.dropped) out(`partial ${d.digest}: dropped (${d.reason})`);
          for (const d of r.partials.removedFiles) out(`partial file without a checkpoint removed: ${d}`);
          for (const d of r.locked) out(`in use by a running download, left alone: ${d}`);
          for (const d of r.linksReplaced) out(`${d} was a symbolic link: the link removed (its target untouched), an empty directory made`);
          for (const d of r.strayLinks) out(`not a regular file, removed (a link is removed itself, never its target): ${d}`);
          const repaired = r.linksReplaced.length + r.strayLinks.length + r.corrupt.length + r.missing.length + r.adopted.length + r.removedFiles.length + r.partials.truncated.length + r.partials.dropped.length + r.partials.removedFiles.length;
          out(`${r.checked} blobs re-hashed (${formatBytes(r.bytes)}) in ${r.seconds.toFixed(1)} s: ${repaired ? `${repaired} repairs` : 'all good'}${r.tmpRemoved ? `, ${r.tmpRemoved} temp files removed` : ''}`);
        })(),
      ),
  );

  cmd.addCommand(
    sub('prune', 'remove blobs not used for a while (never one a running download holds)')
      .requiredOption('--older-than <duration>', 'not used for this long: 30d, 12h, 1h30m, 2w', durationArg)
      .option('--dry-run', 'only say what would be removed')
      .action((flags: CacheFlags & { olderThan: number; dryRun?: boolean }) =>
        (async () => {
          const { cachePrune } = await import('../api/cache.js');
          const r = await cachePrune({ cacheDir: flags.cache, olderThan: flags.olderThan, dryRun: flags.dryRun });
          if (flags.json) return out(JSON.stringify(r));
          const verb = r.dryRun ? 'would remove' : 'removed';
          for (const b of r.removed) out(`${verb} ${b.digest} (${formatBytes(b.size)}, last used ${when(b.lastUsedAt)})`);
          for (const d of r.locked) out(`in use by a running download, kept: ${d}`);
          out(`${verb} ${r.removed.length} blobs (${formatBytes(r.removedBytes)}) and ${r.partialsRemoved.length} stale partial downloads; kept ${r.kept.blobs} blobs (${formatBytes(r.kept.bytes)})`);
        })(),
      ),
  );
  return cmd;
}
