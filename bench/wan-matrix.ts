#!/usr/bin/env node
// The WAN matrix: a real docker-registry behind the fault proxy (test/support/proxy.ts), which adds a
// delay to every request (the round trip) and paces every blob body to a rate per client connection
// (a per-connection cap, no global one), all on loopback: no tc/netem, nothing shared with others.
// For each cap × RTT cell, with the order alternating from cell to cell:
//   adaptive  ocisave save, defaults (adaptive connections, --jobs 32 ceiling, ranges sized from the rate)
//   fixed     ocisave save --fixed-jobs -j 8 --segment-size 32 (the defaults before adaptation)
//   floor     8 parallel whole-blob GETs (bench/floor.ts), bodies discarded: what 8 curls do
// and skopeo sync --all into a second registry at the cells of --sync. The fleet is the WAN one
// (big layers and a few small images), or with --fleet a bench fleet (many references).
//   node dist/bench/wan-matrix.js [--caps 2,8,32] [--rtts 10,50,150] [--sync 8x50] [--fleet medium] [--out FILE]
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FLEET_PRESETS, seedFleet } from '../test/fixtures/fleet.js';
import { CLI, projectRoot } from '../test/support/cli.js';
import { startFaultProxy } from '../test/support/proxy.js';
import { startRegistry } from '../test/support/registry.js';
import { median, timed } from './measure.js';
import { rehost, seedWan, syncYaml, uniqueBlobs, writeImageList } from './workloads.js';
import { UsageError } from '../src/util/errors.js';

const MB = 1e6;
const MiB = 1024 * 1024;
/** Several layers well above 32 MiB (the old range threshold is 64 MiB) and a small fleet of many little ones. */
const BIG_BLOBS = [36 * MiB, 44 * MiB, 52 * MiB, 64 * MiB];
const SMALL_BYTES = 24 * MiB;
const FLOOR_JOBS = 8;

interface Run {
  name: string;
  wallSeconds: number;
  cpuSeconds: number;
  ok: boolean;
  error?: string;
  load1: number;
  /** Highest connection limit the adaptive run reached, from its JSON progress. */
  maxConnections?: number;
}

interface Cell {
  capMBps: number;
  rttMs: number;
  runs: Run[];
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const USAGE = 'usage: node dist/bench/wan-matrix.js [--caps 2,8,32] [--rtts 10,50,150] [--sync 8x50] [--fleet NAME] [--out FILE]';

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: { caps: { type: 'string', default: '2,8,32' }, rtts: { type: 'string', default: '10,50,150' }, sync: { type: 'string', default: '8x50' }, fleet: { type: 'string' }, out: { type: 'string' } },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values } = parsed;
  const preset = values.fleet === undefined ? undefined : FLEET_PRESETS[values.fleet as keyof typeof FLEET_PRESETS];
  if (values.fleet !== undefined && !preset) throw new UsageError(`--fleet ${values.fleet}: one of ${Object.keys(FLEET_PRESETS).join(', ')}`);
  const caps = values.caps.split(',').map(Number);
  const rtts = values.rtts.split(',').map(Number);
  const syncCells = new Set(values.sync ? values.sync.split(',') : []);
  const work = await mkdtemp(join(os.tmpdir(), 'ocisave-wan-'));
  const registry = await startRegistry({ dataDir: join(existsSync('/dev/shm') ? '/dev/shm' : work, `wan-src-${process.pid}`) });
  const proxy = await startFaultProxy(registry.url);
  const cells: Cell[] = [];
  try {
    log(`seeding the ${values.fleet ?? 'WAN'} fleet`);
    const { set, bigBlobs } = preset ? { set: await seedFleet(registry.url, preset), bigBlobs: [] } : await seedWan(registry.url, BIG_BLOBS, SMALL_BYTES);
    const refs = set.references.map((r) => rehost(r, set.registry, proxy.host));
    const list = join(work, 'images.txt');
    await writeImageList(list, refs);
    const blobsFile = join(work, 'blobs.json');
    await writeFile(blobsFile, JSON.stringify(uniqueBlobs(set, proxy.url)));
    const yamlFile = join(work, 'sync.yaml');
    await writeFile(yamlFile, syncYaml({ ...set, registry: proxy.host }, set.references));
    const fleet = { references: refs.length, blobs: Object.keys(set.blobs).length, bytes: set.totalBlobBytes, bigBlobs };
    log(`fleet: ${fleet.references} references, ${fleet.blobs} blobs, ${(fleet.bytes / MB).toFixed(0)} MB${bigBlobs.length ? `, big layers ${bigBlobs.map((b) => (b / MiB).toFixed(0)).join('/')} MiB` : ''}`);
    let n = 0;
    for (const cap of caps) {
      for (const rtt of rtts) {
        proxy.setFaults([{ delayMs: rtt }, { method: 'GET', path: '/blobs/', bandwidthBytesPerSec: cap * MB }]);
        const cell: Cell = { capMBps: cap, rttMs: rtt, runs: [] };
        const names = ['adaptive', 'fixed', 'floor', ...(syncCells.has(`${cap}x${rtt}`) ? ['sync'] : [])];
        const order = n++ % 2 === 0 ? names : [...names].reverse();
        for (const name of order) {
          const dir = join(work, `${cap}-${rtt}-${name}`);
          await mkdir(dir, { recursive: true });
          const run = await contender(name, dir, list, blobsFile, yamlFile, refs.length, set.totalBlobBytes);
          cell.runs.push(run);
          log(`[${cap} MB/s, ${rtt} ms] ${name.padEnd(8)} ${run.ok ? `${run.wallSeconds.toFixed(2)} s` : `FAILED ${run.error}`} (load ${run.load1.toFixed(1)}${run.maxConnections ? `, up to ${run.maxConnections} connections` : ''})`);
        }
        cells.push(cell);
      }
    }
    const report = { date: new Date().toISOString(), fleetName: values.fleet ?? 'wan', fleet, floorJobs: FLOOR_JOBS, cells };
    const out = values.out ?? join(projectRoot(), 'bench', 'results', 'wan-matrix.json');
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    process.stdout.write(markdown(cells));
  } finally {
    await proxy.stop();
    await registry.stop();
    await rm(registry.dataDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

async function contender(name: string, dir: string, list: string, blobsFile: string, yamlFile: string, images: number, bytes: number): Promise<Run> {
  const load1 = os.loadavg()[0]!;
  if (name === 'floor') {
    const m = await timed(process.execPath, [join(projectRoot(), 'dist', 'bench', 'floor.js'), blobsFile, String(FLOOR_JOBS)]);
    return { name, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, ok: m.code === 0, error: m.code === 0 ? undefined : m.stderr.slice(-300), load1 };
  }
  if (name === 'sync') {
    const dest = await startRegistry({ dataDir: join(dir, 'dest') });
    try {
      const m = await timed('skopeo', ['sync', '--all', '--src', 'yaml', '--dest', 'docker', '--dest-tls-verify=false', yamlFile, dest.host]);
      return { name, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, ok: m.code === 0, error: m.code === 0 ? undefined : m.stderr.slice(-300), load1 };
    } finally {
      await dest.stop();
    }
  }
  const extra = name === 'fixed' ? ['--fixed-jobs', '-j', String(FLOOR_JOBS), '--segment-size', '32'] : [];
  let maxConnections = 0;
  const m = await timed(process.execPath, [CLI, 'save', '-f', list, '-o', join(dir, 'out'), '--cache', join(dir, 'cache'), '--format', 'registry', '--json', ...extra], {
    onStderrLine: (line) => {
      if (!line.includes('"connections"')) return;
      const limit = (JSON.parse(line) as { limit: number }).limit;
      maxConnections = Math.max(maxConnections, limit);
    },
  });
  let summary: { images?: number; downloaded?: { bytes?: number } } | undefined;
  try {
    summary = JSON.parse(m.stdout.trim().split('\n').pop() ?? '');
  } catch {
    summary = undefined;
  }
  const error = m.code !== 0 ? `exit ${m.code}: ${m.stderr.slice(-300)}` : summary?.images !== images ? `${summary?.images} images of ${images}` : summary.downloaded?.bytes !== bytes ? `downloaded ${summary.downloaded?.bytes} of ${bytes} bytes` : undefined;
  return { name, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, ok: !error, error, load1, maxConnections: name === 'adaptive' ? maxConnections || undefined : undefined };
}

function markdown(cells: Cell[]): string {
  const wall = (c: Cell, name: string) => median(c.runs.filter((r) => r.name === name && r.ok).map((r) => r.wallSeconds));
  const lines = [
    '| cap/conn | RTT | ocisave adaptive s | fixed -j 8 s | 8 whole-blob GETs s | skopeo sync s | floor ÷ adaptive | fixed ÷ adaptive | connections reached | load |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const c of cells) {
    const a = wall(c, 'adaptive');
    const s = wall(c, 'sync');
    const conns = c.runs.find((r) => r.name === 'adaptive')?.maxConnections;
    const load = median(c.runs.map((r) => r.load1));
    lines.push(
      `| ${c.capMBps} MB/s | ${c.rttMs} ms | ${a.toFixed(1)} | ${wall(c, 'fixed').toFixed(1)} | ${wall(c, 'floor').toFixed(1)} | ${Number.isNaN(s) ? '' : `${s.toFixed(1)} (${(s / a).toFixed(1)}×)`} | ${(wall(c, 'floor') / a).toFixed(2)}× | ${(wall(c, 'fixed') / a).toFixed(2)}× | ${conns ?? 8} | ${load.toFixed(1)} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

main().catch((err: unknown) => {
  if (err instanceof UsageError) {
    log(`wan-matrix: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  log(`wan-matrix: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
