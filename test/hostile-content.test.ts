// Hostile content on the local side (issue 11), against the real registry: layers that try to
// remove or write outside the output, chart bombs, binary -f files, crash leftovers, a full disk.
// Every case checks the exit status, a one-line message, and canaries outside the output.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, collect, ocisave, startCli, type CliResult } from './support/cli.js';
import { runOk } from './support/exec.js';
import { startFaultProxy } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { buildLayer, MT, pushBlobStream, pushImage, randomLayerStream, type LayerEntry } from './fixtures/index.js';
import { describeTree } from './link-graph.js';
import { blobDataPath, REGISTRY_ROOT } from '../src/link/registry.js';

const MiB = 1024 * 1024;
let reg: RunningRegistry;
let work: string;
let cache: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-hostile-'));
  cache = join(work, 'cache');
  reg = await startRegistry();
});
afterAll(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

/** stderr lines, without the progress lines a non-TTY run prints. */
const errorLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l.startsWith('ocisave: error:'));

/** A lower layer every hostile image sits on: the entries whiteouts aim at. */
const BASE: LayerEntry[] = [
  { type: 'dir', path: 'etc' },
  { type: 'file', path: 'etc/hostname', content: 'base\n' },
  { type: 'dir', path: 'sub' },
  { type: 'file', path: 'sub/x', content: 'x\n' },
];

async function pushHostile(name: string, entries: LayerEntry[]): Promise<string> {
  const layers = [await buildLayer(BASE), await buildLayer(entries)];
  await pushImage(reg.url, `hostile/${name}`, 'v1', { format: 'oci', layers });
  return `${reg.host}/hostile/${name}:v1`;
}

/**
 * A case directory with the output at A/B/rootfs, canaries in the output's parent (A/B), its
 * grandparent (A) and a sibling (A/B/sibling), and a host directory symlinks can aim at.
 */
async function caseDir(name: string): Promise<{ out: string; host: string; check: () => Promise<void> }> {
  const root = join(work, name);
  const b = join(root, 'a', 'b');
  await mkdir(join(b, 'sibling'), { recursive: true });
  const host = join(root, 'host');
  await mkdir(host);
  const canaries = { [join(root, 'a', 'canary')]: 'a\n', [join(b, 'canary')]: 'b\n', [join(b, 'sibling', 'file')]: 'sibling\n', [join(host, 'victim')]: 'host\n' };
  for (const [p, c] of Object.entries(canaries)) await writeFile(p, c);
  return {
    out: join(b, 'rootfs'),
    host,
    check: async () => {
      for (const [p, c] of Object.entries(canaries)) expect(await readFile(p, 'utf8'), p).toBe(c);
      expect((await readdir(host)).sort()).toEqual(['victim']);
      // Nothing but the output itself (when it succeeded) appeared beside it: no staging left.
      expect((await readdir(b)).filter((n) => n !== 'rootfs').sort()).toEqual(['canary', 'sibling']);
    },
  };
}

const raw = (header: Extract<LayerEntry, { type: 'raw' }>['header'], content?: string): LayerEntry => ({ type: 'raw', header, content });

describe('unpack refuses layers that reach outside the output', () => {
  const refused: Array<[string, LayerEntry[], RegExp]> = [
    ['.wh.', [raw({ name: '.wh.', type: 'file' }, '')], /entry "\.wh\.": whiteout "\.wh\." names no entry/],
    ['.wh..', [raw({ name: '.wh..', type: 'file' }, '')], /entry "\.wh\.\.": whiteout "\.wh\.\." names no entry \(its target would be "\."\)/],
    ['.wh...', [raw({ name: '.wh...', type: 'file' }, '')], /entry "\.wh\.\.\.": whiteout "\.wh\.\.\." names no entry \(its target would be "\.\."\)/],
    ['sub/.wh..', [raw({ name: 'sub/.wh..', type: 'file' }, '')], /entry "sub\/\.wh\.\.": whiteout "\.wh\.\." names no entry/],
    ['tar-slip', [{ type: 'file', path: '../../canary', content: 'pwned\n' }], /entry "\.\.\/\.\.\/canary": path escapes the root filesystem/],
    // umoci and containerd clean this to /abs-climb; a name that climbs is refused here, as "../x" is.
    ['absolute name climbing above /', [raw({ name: '/../../abs-climb', type: 'file' }, 'x\n')], /entry "\/\.\.\/\.\.\/abs-climb": path escapes the root filesystem/],
    ['hard link climbing out', [raw({ name: 'hl', type: 'link', linkname: '../../canary' })], /entry "hl": hard link target "\.\.\/\.\.\/canary" escapes the root filesystem/],
    ['hard link to a host path', [raw({ name: 'hl', type: 'link', linkname: '/etc/passwd' })], /entry "hl": hard link target "\/etc\/passwd" does not exist in the root filesystem/],
  ];
  it.each(refused)('%s: exit 1, one line, nothing outside touched', async (name, entries, message) => {
    const ref = await pushHostile(name.replace(/[^a-z]+/g, '-').replace(/^-|-$/g, '') || 'x', entries);
    const c = await caseDir(`refused-${refused.findIndex((r) => r[0] === name)}`);
    const r = await ocisave(['unpack', ref, c.out, '--cache', cache, '--quiet']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^ocisave: error: layer sha256:[a-f0-9]{64}: entry /);
    expect(existsSync(c.out)).toBe(false);
    await c.check();
  });

  it('unpacks the legal ones (absolute names, symlink-then-write, devices, FIFOs) as umoci --rootless does, inside the root', async () => {
    const c = await caseDir('legal');
    const entries: LayerEntry[] = [
      raw({ name: '/abs-name', type: 'file' }, 'absolute\n'),
      { type: 'symlink', path: 'to-host', target: c.host },
      raw({ name: 'to-host/pwned', type: 'file' }, 'lands in the rootfs\n'),
      { type: 'symlink', path: 'up', target: '../../../../../..' },
      raw({ name: 'up/canary', type: 'file' }, 'lands at the root of the rootfs\n'),
      { type: 'symlink', path: 'host-victim', target: join(c.host, 'victim') },
      // Replaces the symlink; never writes through it.
      raw({ name: 'host-victim', type: 'file' }, 'replaced the link\n'),
      { type: 'dir', path: 'dev' },
      raw({ name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 }),
      raw({ name: 'dev/sda', type: 'block-device', mode: 0o660, devmajor: 8, devminor: 0 }),
      raw({ name: 'dev/pipe', type: 'fifo', mode: 0o600 }),
    ];
    const ref = await pushHostile('legal', entries);
    const setSince = Math.floor(Date.now() / 1000);
    const r = await ocisave(['unpack', ref, c.out, '--cache', cache]);
    expect(r.code, r.stderr).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('warning:'));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^warning: layer sha256:[a-f0-9]{64}: entry "dev\/null": device 1:3 written as an empty file/);
    expect(warnings[1]).toMatch(/entry "dev\/sda": device 8:0 written as an empty file/);

    const layout = join(c.out, '..', '..', '..', 'layout');
    await runOk('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${layout}:legal`]);
    const bundle = join(c.out, '..', '..', '..', 'umoci');
    await runOk('umoci', ['unpack', '--rootless', '--image', `${layout}:legal`, bundle]);
    const ours = await describeTree(c.out, { mtimes: true, setSince });
    expect(ours).toEqual(await describeTree(join(bundle, 'rootfs'), { mtimes: true, setSince }));
    expect(ours['abs-name']?.type).toBe('file');
    expect(ours[`${c.host.slice(1)}/pwned`]?.type).toBe('file');
    expect(ours['canary']?.type).toBe('file');
    expect(ours['host-victim']?.type).toBe('file');
    expect(ours['dev/null']).toMatchObject({ type: 'file', size: 0, mode: 0o666 });
    expect(ours['dev/pipe']?.type).toBe('fifo');
    await c.check();
  });
});

// --- charts ---------------------------------------------------------------------------------

/** A gzip'd tar of `entries` (content given once, repeated `times`), built streaming. */
async function tgz(entries: Array<{ name: string; content: Buffer; times?: number }>): Promise<Buffer> {
  const pack = tar.pack();
  const gz = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gz.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    gz.on('end', resolve);
    gz.on('error', reject);
  });
  pack.pipe(gz);
  for (const e of entries) {
    for (let i = 0; i < (e.times ?? 1); i++) {
      const name = e.times ? e.name.replace('#', String(i)) : e.name;
      await new Promise<void>((resolve, reject) => pack.entry({ name, size: e.content.length }, e.content, (err) => (err ? reject(err) : resolve())));
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const chartYaml = (name: string) => Buffer.from(`apiVersion: v2\nname: ${name}\nversion: 1.0.0\n`);

/** `node --import` a hook that prints the process's peak RSS (VmHWM, from /proc) as it exits. */
async function peakRssHook(): Promise<string> {
  const hook = join(work, 'vmhwm.mjs');
  await writeFile(
    hook,
    `import { readFileSync, writeSync } from 'node:fs';
process.on('exit', () => writeSync(2, 'VmHWM ' + /VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1] + '\\n'));\n`,
  );
  return pathToFileURL(hook).href;
}

async function listImagesMeasured(path: string): Promise<{ r: CliResult; peakMiB: number; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', await peakRssHook(), CLI, 'list-images', path], { stdio: ['pipe', 'pipe', 'pipe'] });
  const r = await collect(child, { timeoutMs: 120_000 });
  const kb = Number(/^VmHWM (\d+)$/m.exec(r.stderr)?.[1]);
  return { r: { ...r, stderr: r.stderr.replace(/^VmHWM \d+\n/m, '') }, peakMiB: kb / 1024, ms: Date.now() - started };
}

describe('chart bombs', () => {
  it('one byte budget for the whole chart tree: 16 subcharts of 60 MiB each stop at 100 MiB', async () => {
    // Each subchart is under the limit alone (as each archive was under the old per-archive one).
    const sub = await tgz([
      { name: 'sub/Chart.yaml', content: chartYaml('sub') },
      { name: 'sub/templates/f#.yaml', content: Buffer.alloc(4 * MiB, 0x20), times: 15 },
    ]);
    const bomb = await tgz([
      { name: 'bomb/Chart.yaml', content: chartYaml('bomb') },
      { name: 'bomb/charts/sub-#.tgz', content: sub, times: 16 },
    ]);
    const path = join(work, 'bomb.tgz');
    await writeFile(path, bomb);
    expect(bomb.length).toBeLessThan(1 * MiB);
    const { r, peakMiB, ms } = await listImagesMeasured(path);
    console.log(`chart bomb: ${bomb.length} bytes on disk, 16 x 60 MiB inside; exit ${r.code}, peak RSS ${peakMiB.toFixed(0)} MiB, ${ms} ms`);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `ocisave: error: Helm chart ${path}: it and its subcharts unpack to more than 100 MiB (the limit for a whole chart tree); not read further (a real chart is far smaller: a decompression bomb?)`,
    ]);
    expect(peakMiB).toBeLessThan(400);
    expect(ms).toBeLessThan(60_000);
  });

  it('a file larger than 5 MiB is refused by its header, before its bytes are read', async () => {
    const bomb = await tgz([
      { name: 'big/Chart.yaml', content: chartYaml('big') },
      { name: 'big/values.yaml', content: Buffer.alloc(250 * MiB, 0x20) },
    ]);
    const path = join(work, 'bigfile.tgz');
    await writeFile(path, bomb);
    const { r, peakMiB } = await listImagesMeasured(path);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `ocisave: error: Helm chart ${path}: ${path}/big/values.yaml is 250 MiB, more than 5 MiB (the limit for one chart file); not read further (a real chart is far smaller: a decompression bomb?)`,
    ]);
    expect(peakMiB).toBeLessThan(400);
  });

  it('subcharts nested deeper than 16 levels are refused, naming the chart and the limit', async () => {
    let inner = await tgz([{ name: 'c17/Chart.yaml', content: chartYaml('c17') }]);
    for (let i = 16; i >= 0; i--) inner = await tgz([{ name: `c${i}/Chart.yaml`, content: chartYaml(`c${i}`) }, { name: `c${i}/charts/c${i + 1}.tgz`, content: inner }]);
    const path = join(work, 'deep.tgz');
    await writeFile(path, inner);
    const r = await ocisave(['list-images', path]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^ocisave: error: Helm chart ${path}: subcharts nested deeper than 16 levels \\(at ${path}#c0/charts/c1.tgz#c1/`));
  });
});

// --- binary -f files ----------------------------------------------------------------------------

describe('-f files that are not text', () => {
  it('a binary file is refused in one short line, by save and list-images', async () => {
    const bin = Buffer.alloc(300 * 1024);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919 + 13) % 251; // has NUL bytes, no newline for long stretches
    const path = join(work, 'binary.dat');
    await writeFile(path, bin);
    for (const args of [['save', '-f', path, '-o', join(work, 'bin-out'), '--cache', cache], ['list-images', path]]) {
      const r = await ocisave(args);
      expect(r.code, args[0]).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^ocisave: error: ${path} is not a text file \\(NUL byte at offset \\d+\\); expected an image list`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.length).toBeLessThan(300);
    }
    expect(existsSync(join(work, 'bin-out'))).toBe(false);
  });

  it('invalid UTF-8 without NUL bytes is refused too; a huge junk line is quoted short', async () => {
    const latin1 = Buffer.from('caf\xe9 cr\xe8me\n'.repeat(100), 'latin1');
    const path = join(work, 'latin1.txt');
    await writeFile(path, latin1);
    const r = await ocisave(['list-images', path]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`ocisave: error: ${path} is not a text file (invalid UTF-8 in its first 8192 bytes); expected an image list, Kubernetes YAML, a Helm chart (directory or .tgz) or a lock file`);

    const long = join(work, 'long.txt');
    await writeFile(long, `nginx:1.25\n${'Bad'.repeat(100_000)}\n`);
    const r2 = await ocisave(['list-images', long]);
    expect(r2.code).toBe(1);
    expect(r2.stdout).toBe('docker.io/library/nginx:1.25\n');
    expect(r2.stderr.trim().split('\n')).toHaveLength(1);
    expect(r2.stderr).toContain(`${long}:2: invalid reference "BadBad`);
    expect(r2.stderr).toContain('… (300000 characters)');
    expect(r2.stderr.length).toBeLessThan(1000);
  });
});

// --- crash leftovers ----------------------------------------------------------------------------

describe('staging left by a killed save', () => {
  it('is removed by the next save of the same output; a live concurrent save keeps its own', async () => {
    const small = await pushHostile('small', [{ type: 'file', path: 'hello', content: 'hello\n' }]);
    const { stream, result } = randomLayerStream({ seed: 'hostile-big', bytes: 8 * MiB });
    const blob = await pushBlobStream(reg.url, 'hostile/big', stream, MT.dockerLayer);
    await pushImage(reg.url, 'hostile/big', 'v1', { format: 'docker', layers: [{ digest: blob.digest, size: blob.size, diffId: (await result).diffId, repo: 'hostile/big' }] });
    const big = `${reg.host}/hostile/big:v1`;
    const proxy = await startFaultProxy(reg.url);
    const parent = join(work, 'staged');
    const out = join(parent, 'bundle');
    const stagings = async () => (await readdir(parent).catch(() => [] as string[])).filter((n) => /^\.bundle\.partial-\d+-/.test(n)).sort();
    const smallTag = (root: string) => join(root, REGISTRY_ROOT, 'repositories', 'hostile/small', '_manifests', 'tags', 'v1', 'current', 'link');
    /** A save through the proxy that holds the big blob back; resolves once its staging holds the small image. */
    const startHeld = async (known: string[]) => {
      const child = startCli(['save', small.replace(reg.host, proxy.host), big.replace(reg.host, proxy.host), '-o', out, '--cache', join(work, `cache-held-${known.length}`), '--json']);
      const done = collect(child, { timeoutMs: 300_000 });
      let mine: string | undefined;
      while (!mine && child.exitCode === null) {
        mine = (await stagings()).find((s) => !known.includes(s) && existsSync(smallTag(join(parent, s))));
        if (!mine) await new Promise((r) => setTimeout(r, 20));
      }
      expect(mine, 'the held save never staged the small image').toBeDefined();
      return { child, done, staging: mine! };
    };
    try {
      proxy.setFaults([{ method: 'GET', path: `/v2/hostile/big/blobs/${blob.digest}$`, delayMs: 600_000 }]);
      await mkdir(parent, { recursive: true });
      const outside = join(work, 'staging-outside');
      await mkdir(outside);
      await writeFile(join(outside, 'keep'), 'keep\n');
      await writeFile(join(parent, '.bundle.partial-notes'), 'not a staging name: left alone\n');

      const dead = await startHeld([]);
      dead.child.kill('SIGKILL');
      expect((await dead.done).signal).toBe('SIGKILL');
      // A link inside the dead staging to a directory outside: removal must not follow it.
      await symlink(outside, join(parent, dead.staging, 'link-out'));
      const live = await startHeld([dead.staging]);

      // A save of the same output while `live` runs: removes the dead staging only.
      const r = await ocisave(['save', small, big, '-o', out, '--cache', join(work, 'cache-direct'), '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(await stagings()).toEqual([live.staging]);
      expect(live.child.exitCode).toBeNull();

      live.child.kill('SIGKILL');
      await live.done;
      const again = await ocisave(['save', small, big, '-o', out, '--cache', join(work, 'cache-direct'), '--json']);
      expect(again.code, again.stderr).toBe(0);
      expect(await stagings()).toEqual([]);
      expect(await readFile(join(parent, '.bundle.partial-notes'), 'utf8')).toBe('not a staging name: left alone\n');
      expect(await readFile(join(outside, 'keep'), 'utf8')).toBe('keep\n');
      expect(existsSync(blobDataPath(out, blob.digest))).toBe(true);
      const verify = await ocisave(['verify', out]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      // The caches the killed saves left are consistent (a second verify finds nothing to repair).
      for (const c of [join(work, 'cache-held-0'), join(work, 'cache-held-1'), join(work, 'cache-direct')]) {
        expect((await ocisave(['cache', 'verify', '--cache', c])).code, c).toBe(0);
        const again = await ocisave(['cache', 'verify', '--cache', c, '--json']);
        expect(again.code, c).toBe(0);
        const report = JSON.parse(again.stdout) as { corrupt: unknown[]; missing: unknown[]; partials: { truncated: unknown[]; dropped: unknown[] } };
        expect([report.corrupt, report.missing, report.partials.truncated, report.partials.dropped], c).toEqual([[], [], [], []]);
      }
    } finally {
      await proxy.stop();
    }
  });
});

// --- full disk ------------------------------------------------------------------------------------

describe('a full disk', () => {
  // Two 4 MiB tmpfs mounts (the test runs as root in CI): the cache's partial/ directory, so a
  // download fills it while the LMDB index beside it still has room, and an output directory.
  const mounts: string[] = [];
  const mountTmpfs = async (dir: string) => {
    await mkdir(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);
    mounts.push(dir);
  };
  afterAll(() => {
    for (const dir of mounts) execFileSync('umount', [dir]);
  });

  async function pushRandom(repo: string, bytes: number): Promise<{ ref: string; digest: string }> {
    const { stream, result } = randomLayerStream({ seed: repo, bytes });
    const blob = await pushBlobStream(reg.url, repo, stream, MT.dockerLayer);
    await pushImage(reg.url, repo, 'v1', { format: 'docker', layers: [{ digest: blob.digest, size: blob.size, diffId: (await result).diffId, repo }] });
    return { ref: `${reg.host}/${repo}:v1`, digest: blob.digest };
  }

  it('is named, with the file, when a download fills it (ENOSPC, not "short write")', async () => {
    const { ref, digest } = await pushRandom('hostile/enospc', 6 * MiB);
    const fullCache = join(work, 'enospc-cache');
    await mountTmpfs(join(fullCache, 'partial'));
    const r = await ocisave(['save', ref, '-o', join(work, 'enospc-out'), '--cache', fullCache, '--quiet', '--segment-size', '0']);
    expect(r.code, r.stderr).toBe(1);
    const lines = errorLines(r);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`no space left on device (ENOSPC) writing ${fullCache}/partial/${digest.slice(7)}`);
    expect(r.stderr).not.toContain('short write');
    expect(existsSync(join(work, 'enospc-out'))).toBe(false);
    expect((await ocisave(['cache', 'verify', '--cache', fullCache])).code).toBe(0);
  });

  it('is named when the cache index cannot be committed (the whole cache on a full disk)', async () => {
    const { ref } = await pushRandom('hostile/enospc-index', 6 * MiB);
    const fullCache = join(work, 'enospc-index-cache');
    await mountTmpfs(fullCache);
    const r = await ocisave(['save', ref, '-o', join(work, 'enospc-index-out'), '--cache', fullCache, '--quiet', '--segment-size', '0']);
    expect(r.code, r.stderr).toBe(1);
    // lmdb-js logs lines of its own; ocisave's error names the errno and the file (the index, or a
    // partial download, whichever the disk refused first).
    const lines = errorLines(r);
    expect(lines.length, r.stderr).toBeGreaterThan(0);
    for (const line of lines) expect(line).toMatch(new RegExp(`no space left on device \\(ENOSPC\\) writing (${fullCache}/(index\\.lmdb|partial/[0-9a-f]{64})|the cache index \\(index\\.lmdb\\))$`));
    expect(existsSync(join(work, 'enospc-index-out'))).toBe(false);
  });

  it('is named, with the output, when an output fills it', async () => {
    const { ref } = await pushRandom('hostile/enospc-out', 6 * MiB);
    const full = join(work, 'full');
    await mountTmpfs(full);
    const out = join(full, 'images.tar');
    const r = await ocisave(['save', ref, '-o', out, '--format', 'docker', '--cache', cache, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(`ocisave: error: no space left on device (ENOSPC) writing ${out}`);
    // The staging tar is gone too: the disk is as it was.
    expect(await readdir(full)).toEqual([]);
  });
});
