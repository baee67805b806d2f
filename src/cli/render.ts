// Renders engine events: a bar on a TTY, a line every few seconds otherwise, JSON lines with --json.
// Everything goes to stderr; stdout is kept for results (the summary, lists).
import type { EngineEvent } from '../util/events.js';
import type { PushEvent } from '../push/push.js';
import { stamp, type OcisaveEvent } from '../api/events.js';
import { describeFailure } from '../engine/errors.js';
import type { Summary } from '../engine/pipeline.js';

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export type ProgressMode = 'tty' | 'lines' | 'json' | 'quiet';

export function progressMode(json: boolean, quiet: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressMode {
  if (json) return 'json';
  if (quiet) return 'quiet';
  return stream.isTTY ? 'tty' : 'lines';
}

/** Events of the library come stamped with their schema; the engine's own (unpack) are stamped here. */
export function createRenderer(mode: ProgressMode, stream: NodeJS.WriteStream = process.stderr): (e: EngineEvent | PushEvent | OcisaveEvent) => void {
  if (mode === 'quiet') return () => {};
  if (mode === 'json') return (e) => stream.write(`${JSON.stringify('schema' in e ? e : stamp(e))}\n`);
  const started = Date.now();
  let lastLine = 0;
  let blobsDone = 0;
  let blobsQueued = 0;
  return (e) => {
    switch (e.type) {
      case 'resolve-failed':
        stream.write(`${mode === 'tty' ? '\r\x1b[K' : ''}error: ${e.error}\n`);
        break;
      case 'blob-queued':
        blobsQueued++;
        break;
      case 'plan':
        // Downloads start while manifests resolve, so a bar may already be on the line: clear it first.
        stream.write(`${mode === 'tty' ? '\r\x1b[K' : ''}${e.blobs} unique blobs (${formatBytes(e.bytes)}): ${e.cached} in cache, ${e.queued} to download (${formatBytes(e.queuedBytes)})\n`);
        break;
      case 'blob-done':
        blobsDone++;
        break;
      case 'blob-retry':
        if (mode === 'lines') stream.write(`retry ${e.digest.slice(7, 19)}: ${e.reason}\n`);
        break;
      case 'blob-failed':
        stream.write(`${mode === 'tty' ? '\r\x1b[K' : ''}failed ${e.digest}: ${e.error}\n`);
        break;
      case 'warning':
        stream.write(`warning: ${e.message}\n`);
        break;
      case 'progress': {
        const secs = (Date.now() - started) / 1000;
        const pct = e.total ? Math.floor((100 * e.done) / e.total) : 100;
        const rate = `${formatBytes(e.done / Math.max(secs, 0.001))}/s`;
        const text = `${pct}% ${formatBytes(e.done)}/${formatBytes(e.total)} ${rate} ${blobsDone}/${blobsQueued} blobs, ${e.active} active`;
        if (mode === 'tty') {
          const width = 24;
          const fill = Math.round((width * pct) / 100);
          stream.write(`\r\x1b[K[${'='.repeat(fill)}${' '.repeat(width - fill)}] ${text}`);
        } else if (Date.now() - lastLine >= 3000) {
          lastLine = Date.now();
          stream.write(`${text}\n`);
        }
        break;
      }
      case 'link':
        if (mode === 'tty') stream.write('\r\x1b[K');
        break;
    }
  };
}

export function summaryText(s: Summary): string {
  const lines: string[] = [];
  const where = s.output ? ` to ${s.output.path} (${s.output.format})` : '';
  lines.push(`saved ${s.images} image${s.images === 1 ? '' : 's'} (${s.manifests} manifests)${where} in ${s.seconds.toFixed(1)}s`);
  lines.push(
    `blobs: ${s.blobs} unique, ${formatBytes(s.bytes)}; downloaded ${s.downloaded.blobs} (${formatBytes(s.downloaded.bytes)})` +
      `, reused ${s.reused.blobs} from cache (${formatBytes(s.reused.bytes)})` +
      (s.resumedBytes ? `, resumed ${formatBytes(s.resumedBytes)} from an earlier run` : ''),
  );
  for (const f of s.failures) lines.push(`failed: ${describeFailure(f)}`);
  return lines.join('\n');
}
