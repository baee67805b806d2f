#!/usr/bin/env node
// `npm run bench [-- --fleet small|medium|large] [--runs N] [--only a,b|clients] [--before DIR] [--out DIR]`
//
// Seeds a real docker-registry on loopback with a fleet of images, then times, in the same run and
// against the same registry, with the order of contenders alternating from round to round:
//   cold    ocisave save, fresh cache, --format registry
//   warm    ocisave save, cache from an earlier run, fresh output
//   warmsame  the same into the output of the untimed warm-up save (a layout that already holds it all)
//   resolve ocisave resolve of every reference with the warm cache: the resolve phase alone
//   wasm    as cold, --hasher wasm (cold itself uses the default hasher)
//   seg0    as cold, --segment-size 0 (no ranged downloads)
//   seg8    as cold, --segment-size 8 (blobs of 16 MiB and more in parallel 8 MiB ranges)
//   fixed   as cold, --fixed-jobs -j 8 --segment-size 32: the defaults before adaptive connections
//   tls     as cold, from a second docker-registry serving the same storage over TLS (an openssl
//           CA trusted through a certs.d directory): the cost of TLS per GB against plain HTTP
//   sync    skopeo sync --all, one process, every reference from a YAML source, into a second registry
//   mirror  ocisave mirror, fresh cache, every reference into a second registry (compare with sync)
//   mirror3 the same as three processes, --shard 1/3, 2/3, 3/3, each with its own cache, at once
//   copy    skopeo copy --all of every reference into one OCI layout, one after another (a shell loop)
//   floor   raw parallel GET of every unique blob (undici, --jobs connections, no hashing, no disk)
//   floorw  the same, each body written to a file (no hashing): what any save to this disk pays
//   curl, nodehttp, dispatch   bare clients over the same blobs, bodies discarded (bench/clients.ts)
//   curlsave  curl over every GET a cold save makes (tags, manifests by digest, blobs): the floor of
//           a fleet bound by requests per second
//   hashed  undici dispatch + sha256 + written to files: the CPU floor ocisave cold is held against
//   path    ocisave's download path alone over the same blobs (scheduler, pool, cache; no resolve,
//           no layout; bench/download-path.ts): the client's share of ocisave cold
//   before  ocisave cold from another build (--before DIR, a checkout with dist/ built)
// then two scenarios:
//   resume  SIGKILL a cold save at ~50% of the bytes, run it again, count what the second run fetched
//   wan     a proxy adding 20 ms per request and 8 MB/s per connection, a workload with big blobs:
//           --jobs 1 vs default, --segment-size 0 vs default
// Prints a Markdown table, writes OUT/<fleet>.json and OUT/<fleet>.svg.
//
// Nothing is deleted on the work disk until the end. On a filesystem without a journal (this
// machine's ext4), creating an inode within ~30-55 s of deleting many makes ext4 skip each recently
// deleted one (recently_deleted() in ialloc.c): a run that follows a deletion of 10,000 files pays
// seconds of kernel time for it. The registries' storage (whose uploads delete their temporary
// files) lives on tmpfs when /dev/shm exists, for the same reason.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_JOBS, DEFAULT_SEGMENT_BYTES } from '../src/engine/pipeline.js';
import { DEFAULT_HASHER } from '../src/hash/hasher.js';
import { FLEET_PRESETS, seedFleet } from '../test/fixtures/fleet.js';
import type { FixtureSet } from '../test/fixtures/model.js';
import { projectRoot } from '../test/support/cli.js';
import { startFaultProxy } from '../test/support/proxy.js';
import { startRegistry, type RunningRegistry } from '../test/support/registry.js';
import { makeCa } from '../test/support/tls.js';
import { barChartSvg, type Panel } from './chart.js';
import { HAVE_GNU_TIME, median, processCpuSeconds, registryPid, timed, treeBytes, type Measured } from './measure.js';
import { snapshotBuild } from './snapshot.js';
import { copyScript, rehost, saveRequests, seedWan, syncYaml, uniqueBlobs, writeImageList } from './workloads.js';
import { MANIFEST_ACCEPT } from '../src/util/mediatypes.js';
import { curlConfig, CURL_ARGS } from './clients.js';

/** Connections of the floors and bare clients: the fixed --jobs default before adaptive connections, so figures stay comparable. */
const FLOOR_JOBS = 8;
const CONTENDERS = ['cold', 'warm', 'warmsame', 'resolve', 'wasm', 'seg0', 'seg8', 'fixed', 'tls', 'sync', 'mirror', 'mirror3', 'copy', 'floor', 'floorw', 'curl', 'curlsave', 'nodehttp', 'dispatch', 'hashed', 'path', 'before'] as const;
/** The default set leaves out `before`, which needs --before. */
const CLIENTS = ['curl', 'curlsave', 'nodehttp', 'dispatch', 'hashed'] as const;
const SCENARIOS = ['resume', 'wan'] as const;
type ContenderName = (typeof CONTENDERS)[number];
type SectionName = ContenderName | (typeof SCENARIOS)[number];

const LABELS: Record<ContenderName, string> = {
  cold: 'ocisave cold',
  warm: 'ocisave warm (all blobs cached)',
  warmsame: 'ocisave warm, same output again',
  resolve: 'ocisave resolve alone (warm cache)',
  wasm: 'ocisave cold --hasher wasm',
  seg0: 'ocisave cold --segment-size 0',
  seg8: 'ocisave cold --segment-size 8',
  fixed: 'ocisave cold --fixed-jobs -j 8 --segment-size 32 (before adaptation)',
  tls: 'ocisave cold over TLS (certs.d CA)',
  sync: 'skopeo sync --all (YAML source) → registry',
  mirror: 'ocisave mirror, fresh cache → registry',
  mirror3: 'ocisave mirror --shard K/3 × 3 processes → registry',
  copy: 'skopeo copy --all × refs, sequential → OCI layout',
  floor: `floor: raw GET, ${FLOOR_JOBS} conns, no hash/disk`,
  floorw: `write floor: raw GET, ${FLOOR_JOBS} conns, written to files, no hash`,
  curl: `curl --parallel, ${FLOOR_JOBS} conns, body discarded`,
  curlsave: `curl --parallel, ${FLOOR_JOBS} conns, every GET of a cold save (tags, manifests, blobs), body discarded`,
  nodehttp: `node:http, ${FLOOR_JOBS} sockets, body discarded`,
  dispatch: `undici dispatch callbacks, ${FLOOR_JOBS} conns, body discarded`,
  hashed: `CPU floor: dispatch + sha256 (${DEFAULT_HASHER}) + written to files`,
  path: 'ocisave download path alone (scheduler, pool, cache; no resolve, no layout)',
  before: 'ocisave cold, --before build',
};

/** Short names for the chart. */
const SHORT: Record<string, string> = {
  cold: 'ocisave cold',
  warm: 'ocisave warm',
  warmsame: 'ocisave warm, same output',
  resolve: 'ocisave resolve',
  wasm: 'ocisave cold, wasm hasher',
  seg0: 'ocisave cold, no segments',
  seg8: 'ocisave cold, 8 MiB segments',
  fixed: 'ocisave cold, fixed 8 conns',
  tls: 'ocisave cold, TLS',
  sync: 'skopeo sync (1 process)',
  mirror: 'ocisave mirror',
  mirror3: 'ocisave mirror, 3 shards',
  copy: 'skopeo copy loop',
  floor: 'floor (raw GET)',
  floorw: 'write floor (GET + write)',
  curl: 'curl (discard)',
  curlsave: "curl, a save's GETs (discard)",
  nodehttp: 'node:http (discard)',
  dispatch: 'undici dispatch (discard)',
  hashed: 'dispatch + sha256 + write',
  path: 'ocisave download path',
  before: 'ocisave cold (before)',
  default: 'ocisave defaults',
  jobs1: 'ocisave --jobs 1',
};

interface RunRecord {
  round: number;
  position: number;
  ok: boolean;
  error?: string;
  wallSeconds: number;
  cpuSeconds: number;
  userSeconds: number;
  sysSeconds: number;
  peakRssBytes: number;
  /** CPU the registries (source, and the destination for sync) spent during the run. */
  registryCpuSeconds: number;
  downloadedBytes?: number;
  /** 1-minute load average when the run started (other work on the machine shows here). */
  load1?: number;
}

interface ContenderResult {
  name: string;
  label: string;
  runs: RunRecord[];
  median: { wallSeconds: number; mbPerSec: number; cpuSeconds: number; peakRssBytes: number; registryCpuSeconds: number };
}

const MB = 1e6;
/** The CLI and the floor, run from a snapshot of dist/ taken at the start (see snapshot.ts). */
let cliPath = '';
let floorPath = '';
let clientsPath = '';
let downloadPathPath = '';
/** --before: the CLI of another build, run as the `before` contender. */
let beforeCliPath = '';
/** Where registries keep their storage: tmpfs when there is one (see the header). */
let registryRoot = '';
let registryCount = 0;

function benchRegistry(name: string): Promise<RunningRegistry> {
  return startRegistry({ dataDir: join(registryRoot, `${name}-${registryCount++}`) });
}
const MiB = 1 << 20;
const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const log = (s: string) => process.stderr.write(`${s}\n`);

function usage(): string {
  return `usage: npm run bench -- [--fleet small|medium|large|wide] [--runs N] [--only ${[...CONTENDERS, ...SCENARIOS, 'clients'].join(',')}] [--before DIR] [--out DIR]`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      fleet: { type: 'string', default: 'small' },
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      out: { type: 'string' },
      before: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  const fleetName = values.fleet as keyof typeof FLEET_PRESETS;
  if (!FLEET_PRESETS[fleetName]) throw new Error(`--fleet must be one of ${Object.keys(FLEET_PRESETS).join(', ')}\n${usage()}`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number of at least 1\n${usage()}`);
  const all: SectionName[] = [...CONTENDERS, ...SCENARIOS];
  // `clients`: the bare clients beside ocisave cold (and `before` when --before is given).
  const only = (values.only ? values.only.split(',').map((s) => s.trim()).filter(Boolean) : all.filter((s) => s !== 'before' || values.before)).flatMap((s) =>
    s === 'clients' ? ['cold', ...CLIENTS, ...(values.before ? ['before'] : [])] : [s],
  );
  for (const s of only) if (!all.includes(s as SectionName)) throw new Error(`--only: unknown "${s}"\n${usage()}`);
  if (only.includes('before')) {
    if (!values.before) throw new Error(`--only before needs --before DIR (a checkout with dist/ built)\n${usage()}`);
    beforeCliPath = join(resolve(values.before), 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(beforeCliPath)) throw new Error(`--before: ${beforeCliPath} not found (run npm run build there)`);
  }
  const selected = new Set(only as SectionName[]);
  const outDir = resolve(values.out ?? join(projectRoot(), 'bench', 'results'));
  if (!HAVE_GNU_TIME) log('warning: /usr/bin/time not found (apt-get install -y time): CPU seconds and peak RSS will be n/a');

  const work = await mkdtemp(join(os.tmpdir(), 'ocisave-bench-'));
  registryRoot = existsSync('/dev/shm') ? await mkdtemp('/dev/shm/ocisave-bench-registries-') : join(work, 'registries');
  const registries: RunningRegistry[] = [];
  const cleanup = () => {
    rmSync(work, { recursive: true, force: true });
    rmSync(registryRoot, { recursive: true, force: true });
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });

  const started = new Date();
  const report: Record<string, unknown> = {
    date: started.toISOString(),
    machine: machineInfo(),
    fleet: fleetName,
    runs,
    ocisaveDefaults: { jobs: DEFAULT_JOBS, segmentBytes: DEFAULT_SEGMENT_BYTES, hasher: DEFAULT_HASHER },
    gitHead: gitHead(),
  };
  try {
    const snap = await snapshotBuild(projectRoot(), join(work, 'build'));
    cliPath = snap.cli;
    floorPath = snap.floor;
    clientsPath = snap.clients;
    downloadPathPath = snap.downloadPath;
    if (beforeCliPath) beforeCliPath = (await snapshotBuild(resolve(beforeCliPath, '..', '..', '..', '..'), join(work, 'build-before'))).cli;

    const contenders = CONTENDERS.filter((c) => selected.has(c));
    if (contenders.length || selected.has('resume')) {
      // --- workload ---------------------------------------------------------------------------
      const source = await benchRegistry('source');
      registries.push(source);
      const seedStart = performance.now();
      const set = await seedFleet(source.url, {
        ...FLEET_PRESETS[fleetName],
        onProgress: (d, n) => process.stderr.write(`\rseeding ${fleetName} fleet: ${d}/${n} repositories`),
      });
      process.stderr.write('\n');
      const repos = new Set(Object.values(set.refs).map((r) => r.repository)).size;
      const blobSizes = Object.values(set.blobs).map((b) => b.size);
      const fleet = {
        name: fleetName,
        references: set.references.length,
        repositories: repos,
        manifests: Object.keys(set.manifests).length,
        uniqueBlobs: blobSizes.length,
        uniqueBytes: set.totalBlobBytes,
        largestBlobBytes: Math.max(...blobSizes),
        blobsSegmentedByDefault: blobSizes.filter((s) => s >= 2 * DEFAULT_SEGMENT_BYTES).length,
        blobsSegmentedAt8MiB: blobSizes.filter((s) => s >= 2 * 8 * MiB).length,
        seedSeconds: (performance.now() - seedStart) / 1000,
      };
      report.fleet = fleet;
      log(
        `fleet ${fleetName}: ${fleet.references} references in ${repos} repositories, ${fleet.uniqueBlobs} unique blobs, ` +
          `${fmt(fleet.uniqueBytes / MB)} MB (largest ${fmt(fleet.largestBlobBytes / MiB)} MiB), seeded in ${fmt(fleet.seedSeconds)} s`,
      );
      const list = join(work, 'images.txt');
      await writeImageList(list, set.references);
      const sourcePid = await registryPid(source.configPath);

      // --- contenders, alternating order ------------------------------------------------------------
      if (contenders.length) {
        const ctx: Ctx = { work, list, set, source, sourcePid, warmCache: join(work, 'warm-cache') };
        if (contenders.includes('tls')) {
          const tls = await tlsSource(ctx);
          registries.push(tls.registry);
          ctx.tls = tls;
        }
        if (contenders.some((c) => c === 'warm' || c === 'warmsame' || c === 'resolve')) {
          log('preparing the warm cache (one cold save, not timed)');
          const prep = await ocisaveSave(ctx, ctx.warmCache, join(work, 'warm-prep-out'), []);
          if (!prep.ok) throw new Error(`warm cache preparation failed: ${prep.error}`);
        }
        const results = new Map<ContenderName, RunRecord[]>(contenders.map((c) => [c, []]));
        for (let round = 0; round < runs; round++) {
          const order = round % 2 === 0 ? contenders : [...contenders].reverse();
          for (const [position, name] of order.entries()) {
            const load1 = os.loadavg()[0];
            const rec = { ...(await runContender(ctx, name, round, position)), load1 };
            results.get(name)!.push(rec);
            log(`[round ${round + 1}/${runs}] ${name.padEnd(5)} ${rec.ok ? `${fmt(rec.wallSeconds, 2)} s wall, ${fmt(rec.cpuSeconds, 2)} s CPU` : `FAILED: ${rec.error}`}`);
            report.pageCacheDropped = settle();
          }
        }
        const table: ContenderResult[] = contenders.map((name) => summarise(name, LABELS[name], results.get(name)!, set.totalBlobBytes));
        report.contenders = table;
      }

      if (selected.has('resume')) report.resume = await resumeScenario({ work, list, set, source, sourcePid, warmCache: '' });
    }
    if (selected.has('wan')) report.wan = await wanScenario(work, runs);

    // --- output -----------------------------------------------------------------------------------------
    report.totalSeconds = (Date.now() - started.getTime()) / 1000;
    await mkdir(outDir, { recursive: true });
    const jsonPath = join(outDir, `${fleetName}.json`);
    const svgPath = join(outDir, `${fleetName}.svg`);
    await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    await writeFile(svgPath, chart(report));
    process.stdout.write(markdown(report));
    log(`\nwrote ${jsonPath}\nwrote ${svgPath}\nbench took ${fmt(report.totalSeconds as number, 0)} s`);
  } finally {
    await Promise.all(registries.map((r) => r.stop().catch(() => undefined)));
    cleanup();
  }
}

// --- contenders ---------------------------------------------------------------------------------------

/**
 * Between two runs: the dirty pages of one contender should not be written back during the next,
 * and each run should start with free memory instead of reclaiming the page cache that the runs
 * before it filled (each writes ~0.5 GB of a medium fleet, and nothing is deleted until the end).
 * Dropping clean pages needs root; without it the runs go on with a full page cache. The
 * registries' storage is on tmpfs, which this does not touch.
 */
function settle(): boolean {
  execFileSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1');
    return true;
  } catch {
    return false;
  }
}

interface Ctx {
  work: string;
  list: string;
  set: FixtureSet;
  source: RunningRegistry;
  sourcePid: number | undefined;
  warmCache: string;
  /** The same storage over TLS: its image list, certs.d root and registry process. */
  tls?: { registry: RunningRegistry; list: string; certsD: string; pid: number | undefined };
}

/** A second registry on the source's storage, serving TLS with a CA of our own, trusted through certs.d. */
async function tlsSource(ctx: Ctx): Promise<NonNullable<Ctx['tls']>> {
  const ca = await makeCa(join(ctx.work, 'tls-ca'));
  const registry = await startRegistry({ dataDir: ctx.source.dataDir, keepDataDir: true, tls: await ca.server(['127.0.0.1', 'localhost']) });
  const certsD = join(ctx.work, 'certs.d');
  await mkdir(join(certsD, registry.host), { recursive: true });
  await writeFile(join(certsD, registry.host, 'ca.crt'), await readFile(ca.cert));
  const list = join(ctx.work, 'images-tls.txt');
  await writeImageList(list, ctx.set.references.map((r) => rehost(r, ctx.source.host, registry.host)));
  return { registry, list, certsD, pid: await registryPid(registry.configPath) };
}

interface SaveRun extends RunRecord {
  summary?: any;
}

/** One `ocisave save` of the image list into a registry layout, measured. */
async function ocisaveSave(
  ctx: Ctx,
  cache: string,
  out: string,
  extra: string[],
  listFile = ctx.list,
  expectImages = ctx.set.references.length,
  via: { env?: NodeJS.ProcessEnv; pid?: number; cli?: string } = { pid: ctx.sourcePid },
): Promise<SaveRun> {
  const args = [via.cli ?? cliPath, 'save', '-f', listFile, '-o', out, '--cache', cache, '--format', 'registry', '--json', ...extra];
  const reg0 = await processCpuSeconds(via.pid);
  const m = await timed(process.execPath, args, { env: via.env });
  const regCpu = (await processCpuSeconds(via.pid)) - reg0;
  let summary: any;
  try {
    summary = JSON.parse(m.stdout.trim().split('\n').pop() ?? '');
  } catch {
    summary = undefined;
  }
  const problem =
    m.code !== 0 ? `exit ${m.code ?? m.signal}: ${lastLines(m.stderr)}` : !summary ? 'no JSON summary' : summary.failures?.length ? JSON.stringify(summary.failures[0]) : summary.images !== expectImages ? `${summary.images} images, expected ${expectImages}` : undefined;
  return { ...record(m, regCpu, 0, 0), ok: !problem, error: problem, downloadedBytes: summary?.downloaded?.bytes, summary };
}

function record(m: Measured, registryCpuSeconds: number, round: number, position: number): RunRecord {
  return {
    round,
    position,
    ok: m.code === 0,
    error: m.code === 0 ? undefined : `exit ${m.code ?? m.signal}${m.timedOut ? ' (timed out)' : ''}: ${lastLines(m.stderr || m.stdout)}`,
    wallSeconds: m.wallSeconds,
    cpuSeconds: m.cpuSeconds,
    userSeconds: m.userSeconds,
    sysSeconds: m.sysSeconds,
    peakRssBytes: m.peakRssBytes,
    registryCpuSeconds,
  };
}

const lastLines = (s: string) => s.trim().split('\n').slice(-3).join(' | ').slice(0, 400);

/** Runs one contender in a directory of its own, left in place until the bench ends (see the header). */
async function runContender(ctx: Ctx, name: ContenderName, round: number, position: number): Promise<RunRecord> {
  const dir = join(ctx.work, `${name}-${round}`);
  await mkdir(dir, { recursive: true });
  {
    switch (name) {
      case 'cold':
      case 'before':
      case 'wasm':
      case 'seg0':
      case 'seg8':
      case 'fixed':
      case 'tls': {
        const extra = { cold: [], before: [], wasm: ['--hasher', 'wasm'], seg0: ['--segment-size', '0'], seg8: ['--segment-size', '8'], fixed: ['--fixed-jobs', '-j', String(FLOOR_JOBS), '--segment-size', '32'], tls: [] }[name];
        const tls = name === 'tls' ? ctx.tls! : undefined;
        const via = tls ? { env: { OCISAVE_CERTS_D: tls.certsD }, pid: tls.pid } : name === 'before' ? { pid: ctx.sourcePid, cli: beforeCliPath } : undefined;
        const r = await ocisaveSave(ctx, join(dir, 'cache'), join(dir, 'out'), extra, tls?.list, undefined, via);
        if (r.ok && r.downloadedBytes !== ctx.set.totalBlobBytes) {
          r.ok = false;
          r.error = `downloaded ${r.downloadedBytes} bytes, expected ${ctx.set.totalBlobBytes}`;
        }
        return { ...r, summary: undefined, round, position } as RunRecord;
      }
      case 'warm': {
        const r = await ocisaveSave(ctx, ctx.warmCache, join(dir, 'out'), []);
        if (r.ok && r.downloadedBytes !== 0) {
          r.ok = false;
          r.error = `warm run downloaded ${r.downloadedBytes} bytes`;
        }
        return { ...r, summary: undefined, round, position } as RunRecord;
      }
      case 'warmsame': {
        const r = await ocisaveSave(ctx, ctx.warmCache, join(ctx.work, 'warm-prep-out'), []);
        if (r.ok && r.downloadedBytes !== 0) {
          r.ok = false;
          r.error = `warm run downloaded ${r.downloadedBytes} bytes`;
        }
        return { ...r, summary: undefined, round, position } as RunRecord;
      }
      case 'resolve': {
        const s0 = await processCpuSeconds(ctx.sourcePid);
        const m = await timed(process.execPath, [cliPath, 'resolve', '-f', ctx.list, '--cache', ctx.warmCache]);
        return record(m, (await processCpuSeconds(ctx.sourcePid)) - s0, round, position);
      }
      case 'sync': {
        const dest = await benchRegistry('sync');
        try {
          const yamlFile = join(dir, 'sync.yaml');
          await writeFile(yamlFile, syncYaml(ctx.set));
          const destPid = await registryPid(dest.configPath);
          const s0 = await processCpuSeconds(ctx.sourcePid);
          const d0 = await processCpuSeconds(destPid);
          const m = await timed('skopeo', ['sync', '--all', '--src', 'yaml', '--dest', 'docker', '--dest-tls-verify=false', yamlFile, dest.host]);
          const regCpu = (await processCpuSeconds(ctx.sourcePid)) - s0 + ((await processCpuSeconds(destPid)) - d0);
          return record(m, regCpu, round, position);
        } finally {
          await dest.stop();
          await rm(dest.dataDir, { recursive: true, force: true }); // tmpfs: frees memory, no inode cost
        }
      }
      case 'mirror':
      case 'mirror3':
        return ocisaveMirror(ctx, dir, name === 'mirror' ? 1 : 3, round, position);
      case 'copy': {
        const script = join(dir, 'copy.sh');
        await writeFile(script, copyScript(ctx.set, join(dir, 'oci')));
        const s0 = await processCpuSeconds(ctx.sourcePid);
        const m = await timed('sh', [script]);
        return record(m, (await processCpuSeconds(ctx.sourcePid)) - s0, round, position);
      }
      case 'floor':
      case 'floorw': {
        const blobs = join(dir, 'blobs.json');
        await writeFile(blobs, JSON.stringify(uniqueBlobs(ctx.set)));
        const s0 = await processCpuSeconds(ctx.sourcePid);
        const m = await timed(process.execPath, [floorPath, blobs, String(FLOOR_JOBS), ...(name === 'floorw' ? [join(dir, 'blobs')] : [])]);
        return record(m, (await processCpuSeconds(ctx.sourcePid)) - s0, round, position);
      }
      case 'curl':
      case 'curlsave':
      case 'nodehttp':
      case 'dispatch':
      case 'hashed':
        return bareClient(ctx, name, dir, round, position);
      case 'path': {
        const blobs = join(dir, 'blobs.json');
        await writeFile(blobs, JSON.stringify(uniqueBlobs(ctx.set)));
        const s0 = await processCpuSeconds(ctx.sourcePid);
        const m = await timed(process.execPath, [downloadPathPath, blobs, String(DEFAULT_JOBS), join(dir, 'cache')]);
        return record(m, (await processCpuSeconds(ctx.sourcePid)) - s0, round, position);
      }
    }
  }
}

/** One bare-client loop over every unique blob (bench/clients.ts; curl as one `curl --parallel`), or curl over every GET of a save. */
async function bareClient(ctx: Ctx, name: (typeof CLIENTS)[number], dir: string, round: number, position: number): Promise<RunRecord> {
  const items = name === 'curlsave' ? saveRequests(ctx.set) : uniqueBlobs(ctx.set);
  const blobs = join(dir, 'blobs.json');
  await writeFile(blobs, JSON.stringify(items));
  const s0 = await processCpuSeconds(ctx.sourcePid);
  const viaCurl = name === 'curl' || name === 'curlsave';
  let m: Measured;
  if (viaCurl) {
    const config = join(dir, 'curl.conf');
    await writeFile(config, curlConfig(items, name === 'curlsave' ? `Accept: ${MANIFEST_ACCEPT}` : undefined));
    m = await timed('curl', CURL_ARGS(FLOOR_JOBS, config));
  } else {
    const mode = { nodehttp: 'http', dispatch: 'dispatch', hashed: 'hashed' }[name];
    m = await timed(process.execPath, [clientsPath, mode, blobs, String(FLOOR_JOBS), ...(name === 'hashed' ? [join(dir, 'blobs')] : [])]);
  }
  const rec = record(m, (await processCpuSeconds(ctx.sourcePid)) - s0, round, position);
  if (rec.ok && viaCurl) {
    // One "STATUS BYTES" line a request: every one a 200, and the bytes those listed.
    const lines = m.stdout.trim().split('\n');
    const bytes = lines.reduce((n, l) => n + Number(l.split(' ')[1]), 0);
    const expected = items.reduce((n, i) => n + i.size, 0);
    if (lines.length !== items.length || lines.some((l) => !l.startsWith('200 ')) || bytes !== expected) {
      Object.assign(rec, { ok: false, error: `curl: ${lines.length} answers, ${bytes} bytes; expected ${items.length} 200s, ${expected} bytes` });
    }
  }
  return rec;
}

/**
 * `ocisave mirror` of the image list into a fresh registry, as `shards` processes at once (each
 * its own cache), measured together: wall time of the slowest, CPU and peak RSS summed over them.
 */
async function ocisaveMirror(ctx: Ctx, dir: string, shards: number, round: number, position: number): Promise<RunRecord> {
  const dest = await benchRegistry('mirror');
  try {
    const destPid = await registryPid(dest.configPath);
    const s0 = await processCpuSeconds(ctx.sourcePid);
    const d0 = await processCpuSeconds(destPid);
    const runs = await Promise.all(
      Array.from({ length: shards }, (_, i) =>
        timed(process.execPath, [cliPath, 'mirror', '-f', ctx.list, '--to', dest.host, '--cache', join(dir, `cache-${i}`), '--json', ...(shards > 1 ? ['--shard', `${i + 1}/${shards}`] : [])]),
      ),
    );
    const regCpu = (await processCpuSeconds(ctx.sourcePid)) - s0 + ((await processCpuSeconds(destPid)) - d0);
    const m = runs.reduce((a, b) => ({
      ...a,
      code: a.code || b.code,
      stderr: a.code ? a.stderr : b.stderr,
      wallSeconds: Math.max(a.wallSeconds, b.wallSeconds),
      cpuSeconds: a.cpuSeconds + b.cpuSeconds,
      userSeconds: a.userSeconds + b.userSeconds,
      sysSeconds: a.sysSeconds + b.sysSeconds,
      peakRssBytes: a.peakRssBytes + b.peakRssBytes,
    }));
    const rec = record(m, regCpu, round, position);
    const summaries = runs.map((r) => {
      try {
        return JSON.parse(r.stdout.trim().split('\n').pop() ?? '');
      } catch {
        return undefined;
      }
    });
    const images = summaries.reduce((n, x) => n + (x?.images ?? 0), 0);
    if (rec.ok && images !== ctx.set.references.length) {
      rec.ok = false;
      rec.error = `mirrored ${images} images, expected ${ctx.set.references.length}`;
    }
    return rec;
  } finally {
    await dest.stop();
    await rm(dest.dataDir, { recursive: true, force: true });
  }
}

function summarise(name: string, label: string, runs: RunRecord[], bytes: number): ContenderResult {
  const ok = runs.filter((r) => r.ok);
  const wall = median(ok.map((r) => r.wallSeconds));
  return {
    name,
    label,
    runs,
    median: {
      wallSeconds: wall,
      mbPerSec: bytes / MB / wall,
      cpuSeconds: median(ok.map((r) => r.cpuSeconds)),
      peakRssBytes: median(ok.map((r) => r.peakRssBytes)),
      registryCpuSeconds: median(ok.map((r) => r.registryCpuSeconds)),
    },
  };
}

// --- resume ---------------------------------------------------------------------------------------------

interface ResumeResult {
  /** Bytes the first run planned to download (all of them: it starts cold). */
  totalBytes: number;
  /** Bytes the first run had reported (progress / finished blobs) when it was killed. */
  reportedAtKillBytes: number;
  killedAfterSeconds: number;
  completeBlobBytesAtKill: number;
  partialFileBytesAtKill: number;
  /** (complete blobs + partial files) / total, right after the kill. */
  onDiskFraction: number;
  /** total − bytes on disk after the kill: what a perfect resume still has to fetch. */
  remainderBytes: number;
  secondRun: { ok: boolean; error?: string; downloadedBytes: number; resumedBytes: number; reusedBytes: number; wallSeconds: number };
  /** downloaded by the second run − remainder: bytes on disk after the kill that were fetched again. */
  refetchedBytes: number;
}

async function resumeScenario(ctx: Ctx): Promise<ResumeResult | { error: string }> {
  const dir = join(ctx.work, 'resume');
  const cache = join(dir, 'cache');
  const out = join(dir, 'out');
  await mkdir(dir, { recursive: true });
  log('resume: cold save, SIGKILL at 50% of the bytes');
  const args = [cliPath, 'save', '-f', ctx.list, '-o', out, '--cache', cache, '--format', 'registry', '--json'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const t0 = performance.now();
  // Bytes received so far: the engine's progress samples (every 500 ms) and, in between, the
  // sizes of finished blobs; the first to reach half of the planned bytes triggers the kill.
  let total = 0;
  let finished = 0;
  let killed: { done: number; seconds: number } | undefined;
  let buf = '';
  child.stdout.resume();
  child.stderr.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let e: any;
      try {
        e = JSON.parse(line);
      } catch {
        continue;
      }
      if (e.type === 'plan') total = e.queuedBytes;
      let done = 0;
      if (e.type === 'blob-done') done = finished += e.size;
      if (e.type === 'progress') done = Math.max(finished, e.done);
      if (!killed && total > 0 && done >= total / 2) {
        child.kill('SIGKILL');
        killed = { done, seconds: (performance.now() - t0) / 1000 };
      }
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((res) => child.on('close', (c, s) => res([c, s])));
  clearTimeout(timer);
  if (!killed) return { error: `the first run ended (exit ${code ?? signal}) before half of the bytes were reported` };
  // What the killed run left on disk: verified blobs, and partial files (checkpointed or not).
  const completeBlobBytesAtKill = await treeBytes(join(cache, 'blobs'));
  const partialFileBytesAtKill = await treeBytes(join(cache, 'partial'));
  const onDisk = completeBlobBytesAtKill + partialFileBytesAtKill;
  log(`resume: killed after ${fmt(killed.seconds)} s with ${fmt((100 * onDisk) / total)}% of the bytes on disk; running again`);
  const again = await ocisaveSave(ctx, cache, out, []);
  const s = again.summary ?? {};
  const downloaded = s.downloaded?.bytes ?? NaN;
  const remainder = total - onDisk;
  return {
    totalBytes: total,
    reportedAtKillBytes: killed.done,
    killedAfterSeconds: killed.seconds,
    completeBlobBytesAtKill,
    partialFileBytesAtKill,
    onDiskFraction: onDisk / total,
    remainderBytes: remainder,
    secondRun: { ok: again.ok, error: again.error, downloadedBytes: downloaded, resumedBytes: s.resumedBytes ?? NaN, reusedBytes: s.reused?.bytes ?? NaN, wallSeconds: again.wallSeconds },
    refetchedBytes: downloaded - remainder,
  };
}

// --- WAN --------------------------------------------------------------------------------------------------

const WAN = { delayMs: 20, bandwidthBytesPerSec: 8 * MB, bigBlobs: [72 * MiB, 66 * MiB], smallBytes: 16 * MiB };

async function wanScenario(work: string, runs: number): Promise<unknown> {
  const dir = join(work, 'wan');
  await mkdir(dir, { recursive: true });
  const registry = await benchRegistry('wan');
  const proxy = await startFaultProxy(registry.url);
  try {
    log(`wan: seeding ${WAN.bigBlobs.length} big blobs and a small fleet`);
    const { set, bigBlobs } = await seedWan(registry.url, WAN.bigBlobs, WAN.smallBytes);
    proxy.setFaults([{ delayMs: WAN.delayMs }, { method: 'GET', path: '/blobs/', bandwidthBytesPerSec: WAN.bandwidthBytesPerSec }]);
    const refs = set.references.map((r) => rehost(r, set.registry, proxy.host));
    const list = join(dir, 'images.txt');
    await writeImageList(list, refs);
    const blobsFile = join(dir, 'blobs.json');
    await writeFile(blobsFile, JSON.stringify(uniqueBlobs(set, proxy.url)));
    const pid = await registryPid(registry.configPath);
    const ctx: Ctx = { work: dir, list, set, source: registry, sourcePid: pid, warmCache: '' };
    const configs: { name: string; label: string; extra?: string[] }[] = [
      { name: 'default', label: `ocisave (adaptive, --jobs ${DEFAULT_JOBS} ceiling)`, extra: [] },
      { name: 'fixed', label: `ocisave --fixed-jobs -j ${FLOOR_JOBS} --segment-size ${DEFAULT_SEGMENT_BYTES / MiB} (before adaptation)`, extra: ['--fixed-jobs', '-j', String(FLOOR_JOBS), '--segment-size', String(DEFAULT_SEGMENT_BYTES / MiB)] },
      { name: 'jobs1', label: 'ocisave --jobs 1', extra: ['--jobs', '1'] },
      { name: 'seg0', label: 'ocisave --segment-size 0', extra: ['--segment-size', '0'] },
      { name: 'floor', label: `floor: raw GET, ${FLOOR_JOBS} conns, whole blobs` },
    ];
    const results = new Map<string, RunRecord[]>(configs.map((c) => [c.name, []]));
    for (let round = 0; round < runs; round++) {
      const order = round % 2 === 0 ? configs : [...configs].reverse();
      for (const [position, c] of order.entries()) {
        const runDir = join(dir, `${c.name}-${round}`);
        const load1 = os.loadavg()[0];
        let rec: RunRecord;
        if (c.extra) {
          const r = await ocisaveSave(ctx, join(runDir, 'cache'), join(runDir, 'out'), c.extra, list, refs.length);
          if (r.ok && r.downloadedBytes !== set.totalBlobBytes) Object.assign(r, { ok: false, error: `downloaded ${r.downloadedBytes} of ${set.totalBlobBytes} bytes` });
          rec = { ...r, summary: undefined, round, position } as RunRecord;
        } else {
          const s0 = await processCpuSeconds(pid);
          const m = await timed(process.execPath, [floorPath, blobsFile, String(FLOOR_JOBS)]);
          rec = record(m, (await processCpuSeconds(pid)) - s0, round, position);
        }
        rec.load1 = load1;
        results.get(c.name)!.push(rec);
        log(`[wan ${round + 1}/${runs}] ${c.name.padEnd(7)} ${rec.ok ? `${fmt(rec.wallSeconds, 2)} s` : `FAILED: ${rec.error}`}`);
      }
    }
    return {
      profile: { delayMsPerRequest: WAN.delayMs, bandwidthBytesPerSecPerConnection: WAN.bandwidthBytesPerSec },
      workload: { references: refs.length, uniqueBlobs: Object.keys(set.blobs).length, uniqueBytes: set.totalBlobBytes, bigBlobs },
      contenders: configs.map((c) => summarise(c.name, c.label, results.get(c.name)!, set.totalBlobBytes)),
    };
  } finally {
    await proxy.stop();
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// --- reporting --------------------------------------------------------------------------------------------

/** The checked-out commit (read-only: the working tree may hold uncommitted changes on top). */
function gitHead(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: projectRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function machineInfo(): Record<string, unknown> {
  const version = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim().split('\n')[0];
    } catch {
      return 'n/a';
    }
  };
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    skopeo: version('skopeo', ['--version']),
    registry: version('docker-registry', ['--version']),
  };
}

function markdown(r: Record<string, any>): string {
  const lines: string[] = [];
  const f = r.fleet;
  const m = r.machine;
  lines.push(`## ocisave benchmark — ${f.name ?? r.fleet} fleet, ${r.runs} run(s), medians`);
  lines.push('');
  lines.push(`${r.date.slice(0, 10)}; ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.os}, node ${m.node}, ${m.skopeo}, ${m.registry}.`);
  if (f.references) {
    lines.push(
      `Workload: ${f.references} references in ${f.repositories} repositories, ${f.manifests} manifests, ${f.uniqueBlobs} unique blobs, ` +
        `${fmt(f.uniqueBytes / MB)} MB (largest blob ${fmt(f.largestBlobBytes / MiB)} MiB; ${f.blobsSegmentedByDefault} blob(s) ≥ 2 × ${DEFAULT_SEGMENT_BYTES / MiB} MiB, ${f.blobsSegmentedAt8MiB} ≥ 16 MiB).`,
    );
  }
  lines.push('');
  const cs: ContenderResult[] | undefined = r.contenders;
  if (cs?.length) {
    const cold = cs.find((c) => c.name === 'cold');
    lines.push('| contender | wall s | MB/s | CPU s (user+sys) | peak RSS MB | registry CPU s | ocisave cold ÷ this (wall) | runs ok |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of cs) {
      const x = c.median;
      const walls = c.runs.filter((q) => q.ok).map((q) => q.wallSeconds);
      const spread = walls.length > 1 ? ` (${fmt(Math.min(...walls))}–${fmt(Math.max(...walls))})` : '';
      const ratio = cold ? cold.median.wallSeconds / x.wallSeconds : NaN;
      lines.push(
        `| ${c.label} | ${fmt(x.wallSeconds)}${spread} | ${['warm', 'warmsame', 'resolve'].includes(c.name) ? `(${fmt(x.mbPerSec, 0)})` : fmt(x.mbPerSec, 0)} | ${fmt(x.cpuSeconds)} | ${fmt(x.peakRssBytes / MB, 0)} | ${fmt(x.registryCpuSeconds)} | ${fmt(ratio, 2)} | ${c.runs.filter((q) => q.ok).length}/${c.runs.length} |`,
      );
    }
    for (const c of cs) for (const q of c.runs) if (!q.ok) lines.push(`\nfailed: ${c.name} round ${q.round + 1}: ${q.error}`);
    const loads = cs.flatMap((c) => c.runs.map((q) => q.load1 ?? NaN)).filter((x) => Number.isFinite(x));
    if (loads.length) lines.push(`\n1-minute load average at the start of the runs: median ${fmt(median(loads))} (${fmt(Math.min(...loads))}–${fmt(Math.max(...loads))}) on ${m.cpus} cores.`);
    lines.push(`Between runs: \`sync\`${r.pageCacheDropped ? ', and the clean page cache dropped' : '; the page cache was not dropped (that needs root)'}.`);
    const get = (n: string) => cs.find((c) => c.name === n)?.median;
    // Contenders alternate within a round, so a ratio of two runs of the same round sees the same
    // background load; the median of those per-round ratios is steadier than a ratio of medians.
    const paired = (a: string, b: string, key: 'wallSeconds' | 'cpuSeconds' = 'wallSeconds') => {
      const ra = cs.find((c) => c.name === a)?.runs ?? [];
      const rb = cs.find((c) => c.name === b)?.runs ?? [];
      return median(ra.flatMap((x) => rb.filter((y) => y.round === x.round && x.ok && y.ok).map((y) => x[key] / y[key])));
    };
    const coldM = get('cold');
    lines.push('');
    if (coldM && get('floor')) {
      const k = coldM.wallSeconds / get('floor')!.wallSeconds;
      const p = paired('cold', 'floor');
      lines.push(`- Target "cold within 1.3× of the floor": ${fmt(k, 2)}× (median of per-round ratios ${fmt(p, 2)}×) — ${Math.max(k, p) <= 1.3 ? 'met' : 'NOT met'}.`);
    }
    if (get('floorw') && get('floor')) {
      const w = get('floorw')!;
      lines.push(
        `- Writing the bytes alone (write floor ÷ floor): ${fmt(w.wallSeconds / get('floor')!.wallSeconds, 2)}× (per-round ${fmt(paired('floorw', 'floor'), 2)}×)` +
          (coldM ? `; ocisave cold ÷ write floor: ${fmt(coldM.wallSeconds / w.wallSeconds, 2)}× (per-round ${fmt(paired('cold', 'floorw'), 2)}×).` : '.'),
      );
    }
    const hashed = get('hashed');
    for (const name of ['cold', 'path', 'before']) {
      const m = get(name);
      if (!m || !hashed) continue;
      const k = m.cpuSeconds / hashed.cpuSeconds;
      const p = paired(name, 'hashed', 'cpuSeconds');
      lines.push(`- Target "${LABELS[name as ContenderName]} CPU ≤ 1.25 × (dispatch + sha256 + write)": ${fmt(m.cpuSeconds, 2)} ÷ ${fmt(hashed.cpuSeconds, 2)} CPU-s = ${fmt(k, 2)}× (per-round ${fmt(p, 2)}×) — ${Math.max(k, p) <= 1.25 ? 'met' : 'NOT met'}.`);
    }
    for (const floor of ['curl', 'curlsave'] as const) {
      if (!coldM || !get(floor)) continue;
      const k = coldM.wallSeconds / get(floor)!.wallSeconds;
      const p = paired('cold', floor);
      lines.push(`- Target "cold within 1.5× of ${LABELS[floor]}" (wall): ${fmt(k, 2)}× (per-round ${fmt(p, 2)}×) — ${Math.max(k, p) <= 1.5 ? 'met' : 'NOT met'}.`);
    }
    if (coldM && get('sync')) {
      const k = get('sync')!.wallSeconds / coldM.wallSeconds;
      const p = paired('sync', 'cold');
      lines.push(`- Target "≥ 5× faster than skopeo sync": ${fmt(k, 2)}× (median of per-round ratios ${fmt(p, 2)}×) — ${Math.min(k, p) >= 5 ? 'met' : 'NOT met'}.`);
    }
    if (get('mirror') && get('sync')) {
      lines.push(`- skopeo sync ÷ ocisave mirror (wall, both registry → registry): ${fmt(get('sync')!.wallSeconds / get('mirror')!.wallSeconds, 2)}× (per-round ${fmt(paired('sync', 'mirror'), 2)}×).`);
    }
    if (get('mirror3') && get('sync')) {
      lines.push(`- skopeo sync ÷ ocisave mirror in 3 shards (wall): ${fmt(get('sync')!.wallSeconds / get('mirror3')!.wallSeconds, 2)}× (per-round ${fmt(paired('sync', 'mirror3'), 2)}×).`);
    }
    if (coldM && get('copy')) lines.push(`- skopeo copy loop ÷ ocisave cold (wall): ${fmt(get('copy')!.wallSeconds / coldM.wallSeconds, 2)}× (per-round ${fmt(paired('copy', 'cold'), 2)}×).`);
    if (coldM && get('wasm')) {
      const w = get('wasm')!;
      const faster = coldM.wallSeconds <= w.wallSeconds ? 'node' : 'wasm';
      lines.push(
        `- Hasher (end to end): node ${fmt(coldM.wallSeconds, 2)} s wall / ${fmt(coldM.cpuSeconds, 2)} s CPU, wasm ${fmt(w.wallSeconds, 2)} s / ${fmt(w.cpuSeconds, 2)} s CPU — ${faster} is faster on wall time (default: ${DEFAULT_HASHER}).`,
      );
    }
    if (coldM && get('tls')) {
      const t = get('tls')!;
      const gb = r.fleet.uniqueBytes / 1e9;
      lines.push(
        `- TLS (loopback, certs.d CA, same storage): ${fmt(t.wallSeconds, 2)} s wall / ${fmt(t.cpuSeconds, 2)} s CPU against plain HTTP's ${fmt(coldM.wallSeconds, 2)} s / ${fmt(coldM.cpuSeconds, 2)} s ` +
          `(per-round ${fmt(paired('tls', 'cold'), 2)}×): ${fmt((t.wallSeconds - coldM.wallSeconds) / gb, 2)} s wall and ${fmt((t.cpuSeconds - coldM.cpuSeconds) / gb, 2)} s ocisave CPU ` +
          `(+${fmt((t.registryCpuSeconds - coldM.registryCpuSeconds) / gb, 2)} s registry CPU) per GB.`,
      );
    }
    if (coldM && get('seg0')) {
      lines.push(
        `- Segments (loopback): default ${DEFAULT_SEGMENT_BYTES / MiB} MiB ${fmt(coldM.wallSeconds, 2)} s, --segment-size 0 ${fmt(get('seg0')!.wallSeconds, 2)} s` +
          (get('seg8') ? `, --segment-size 8 ${fmt(get('seg8')!.wallSeconds, 2)} s` : '') +
          ` (${f.blobsSegmentedByDefault} blob(s) big enough to split at the default).`,
      );
    }
  }
  if (r.resume) {
    const x = r.resume;
    lines.push('');
    if (x.error) lines.push(`Resume: ${x.error}`);
    else
      lines.push(
        `Resume: a cold save SIGKILLed after ${fmt(x.killedAfterSeconds)} s, when it had reported ${fmt(x.reportedAtKillBytes / MB)} of ${fmt(x.totalBytes / MB)} MB; ` +
          `on disk: ${fmt(x.completeBlobBytesAtKill / MB)} MB of verified blobs + ${fmt(x.partialFileBytesAtKill / MB)} MB of partial files (${fmt(100 * x.onDiskFraction, 0)}%), ` +
          `so a perfect resume fetches the remaining ${fmt(x.remainderBytes / MB)} MB. The second run downloaded ${fmt(x.secondRun.downloadedBytes / MB)} MB ` +
          `(${x.refetchedBytes >= 0 ? `${fmt(x.refetchedBytes / MB)} MB fetched again, ${fmt((100 * x.refetchedBytes) / x.totalBytes)}% of the total` : `${fmt(-x.refetchedBytes / MB)} MB less than the remainder`}), ` +
          `reused ${fmt(x.secondRun.reusedBytes / MB)} MB of complete blobs and continued ${fmt(x.secondRun.resumedBytes / MB)} MB of partial ones from their checkpoints, in ${fmt(x.secondRun.wallSeconds)} s${x.secondRun.ok ? '' : ` — FAILED: ${x.secondRun.error}`}.`,
      );
  }
  if (r.wan && r.wan.contenders) {
    const w = r.wan;
    lines.push('');
    lines.push(
      `WAN profile (fault proxy: +${w.profile.delayMsPerRequest} ms per request, ${fmt(w.profile.bandwidthBytesPerSecPerConnection / MB, 0)} MB/s per connection); ` +
        `${w.workload.references} references, ${w.workload.uniqueBlobs} blobs, ${fmt(w.workload.uniqueBytes / MB)} MB, big blobs ${w.workload.bigBlobs.map((b: number) => `${fmt(b / MiB)} MiB`).join(' + ')}:`,
    );
    lines.push('');
    lines.push('| WAN contender | wall s | MB/s | CPU s | runs ok |');
    lines.push('|---|---:|---:|---:|---:|');
    for (const c of w.contenders as ContenderResult[]) {
      lines.push(`| ${c.label} | ${fmt(c.median.wallSeconds)} | ${fmt(c.median.mbPerSec)} | ${fmt(c.median.cpuSeconds)} | ${c.runs.filter((q) => q.ok).length}/${c.runs.length} |`);
    }
    for (const c of w.contenders as ContenderResult[]) for (const q of c.runs) if (!q.ok) lines.push(`\nfailed: wan ${c.name} round ${q.round + 1}: ${q.error}`);
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}

function chart(r: Record<string, any>): string {
  const panels: Panel[] = [];
  const cs: ContenderResult[] | undefined = r.contenders;
  if (cs?.length) {
    panels.push({
      title: `${r.fleet.name} fleet on loopback: ${r.fleet.references} refs, ${fmt(r.fleet.uniqueBytes / MB, 0)} MB — wall seconds (median of ${r.runs}), lower is better`,
      bars: cs.map((c) => ({ label: SHORT[c.name] ?? c.name, value: c.median.wallSeconds, text: `${fmt(c.median.wallSeconds)} s · ${fmt(c.median.mbPerSec, 0)} MB/s`, highlight: c.name === 'cold' })),
    });
  }
  if (r.wan?.contenders) {
    panels.push({
      title: `WAN profile: +${r.wan.profile.delayMsPerRequest} ms/request, ${fmt(r.wan.profile.bandwidthBytesPerSecPerConnection / MB, 0)} MB/s per connection, ${fmt(r.wan.workload.uniqueBytes / MB, 0)} MB — wall seconds`,
      bars: (r.wan.contenders as ContenderResult[]).map((c) => ({ label: c.name === 'seg0' ? 'ocisave --segment-size 0' : c.name === 'floor' ? 'floor (whole blobs)' : (SHORT[c.name] ?? c.name), value: c.median.wallSeconds, text: `${fmt(c.median.wallSeconds)} s · ${fmt(c.median.mbPerSec, 0)} MB/s`, highlight: c.name === 'default' })),
    });
  }
  return barChartSvg('ocisave benchmark', panels, `${r.date.slice(0, 10)} · ${r.machine.cpus} cores (${r.machine.cpuModel}) · node ${r.machine.node} · npm run bench -- --fleet ${r.fleet.name ?? r.fleet} --runs ${r.runs}`);
}

main()
  .then(() => process.exit(process.exitCode ?? 0))
  .catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
