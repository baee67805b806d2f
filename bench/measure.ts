// Measuring one contender run: wall time, CPU (user+sys of the child and its descendants) and peak
// RSS from GNU time (`/usr/bin/time -f`), plus the CPU the registries spent serving it.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const GNU_TIME = '/usr/bin/time';
export const HAVE_GNU_TIME = existsSync(GNU_TIME);

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  wallSeconds: number;
  /** user + sys of the process tree (NaN without GNU time). */
  cpuSeconds: number;
  userSeconds: number;
  sysSeconds: number;
  /** Largest resident set of any process in the tree, in bytes (NaN without GNU time). */
  peakRssBytes: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface TimedOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
  /** Called with each complete stderr line (e.g. --json progress events). */
  onStderrLine?: (line: string) => void;
}

let seq = 0;

/** Run `cmd args` under GNU time (when present) and measure it. Never throws for a non-zero exit. */
export async function timed(cmd: string, args: readonly string[], opts: TimedOptions = {}): Promise<Measured> {
  const timeFile = join(tmpdir(), `ocisave-bench-time-${process.pid}-${seq++}`);
  const [file, argv] = HAVE_GNU_TIME ? [GNU_TIME, ['-f', '%e %U %S %M', '-o', timeFile, cmd, ...args]] : [cmd, [...args]];
  const started = performance.now();
  // Own process group, so a timeout can stop the whole tree (time, and what it runs).
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    if (stdout.length > 4 << 20) stdout = stdout.slice(-(2 << 20));
  });
  child.stderr!.on('data', (d: Buffer) => {
    const text = d.toString();
    if (stderr.length < 1 << 20) stderr += text;
    if (!opts.onStderrLine) return;
    partial += text;
    let i: number;
    while ((i = partial.indexOf('\n')) >= 0) {
      opts.onStderrLine(partial.slice(0, i));
      partial = partial.slice(i + 1);
    }
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killTree(child.pid);
  }, opts.timeoutMs ?? 20 * 60_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c, s) => resolve([c, s]));
  });
  clearTimeout(timer);
  const wallSeconds = (performance.now() - started) / 1000;
  let user = NaN;
  let sys = NaN;
  let rss = NaN;
  if (HAVE_GNU_TIME) {
    const text = await readFile(timeFile, 'utf8').catch(() => '');
    await rm(timeFile, { force: true });
    // GNU time writes "Command exited with non-zero status N" before the format line.
    const last = text.trim().split('\n').pop() ?? '';
    const f = last.trim().split(/\s+/).map(Number);
    if (f.length === 4 && f.every((x) => Number.isFinite(x))) {
      user = f[1]!;
      sys = f[2]!;
      rss = f[3]! * 1024;
    }
  }
  return { code, signal, wallSeconds, cpuSeconds: user + sys, userSeconds: user, sysSeconds: sys, peakRssBytes: rss, stdout, stderr, timedOut };
}

export function killTree(pid: number | undefined): void {
  if (!pid) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// --- registry CPU -------------------------------------------------------------------------------

const CLK_TCK = 100;

/** The pid of the docker-registry process serving `configPath` (startRegistry does not expose it). */
export async function registryPid(configPath: string): Promise<number | undefined> {
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('docker-registry') && cmdline.includes(configPath)) return Number(name);
  }
  return undefined;
}

/** utime + stime of a process so far, in seconds (NaN when it cannot be read). */
export async function processCpuSeconds(pid: number | undefined): Promise<number> {
  if (!pid) return NaN;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name (which may contain spaces) start at field 3.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return Number.isFinite(utime) && Number.isFinite(stime) ? (utime + stime) / CLK_TCK : NaN;
}

// --- statistics ---------------------------------------------------------------------------------

export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Size in bytes of every regular file under `dir` (missing dir: 0). */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    const parent = (e as { parentPath?: string; path?: string }).parentPath ?? (e as { path?: string }).path ?? dir;
    total += (await stat(join(parent, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}
