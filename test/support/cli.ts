// Runs the built CLI (dist/) as a user would: a child process with its own environment.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root, whether this file runs from test/ (vitest) or dist/test/ (bench, demo). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

export const CLI = join(projectRoot(), 'dist', 'src', 'cli', 'main.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  input?: string;
  timeoutMs?: number;
}

export function startCli(args: string[], opts: CliOptions = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

export function ocisave(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const child = startCli(args, opts);
  return collect(child, opts);
}

export function collect(child: ChildProcess, opts: CliOptions = {}): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdin!.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The JSON summary a `--json` run prints on stdout. */
export function summaryOf(r: CliResult): any {
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  } catch {
    throw new Error(`no JSON summary (exit ${r.code}): ${r.stderr}`);
  }
}

export interface ServedBundle {
  child: ChildProcess;
  host: string;
  port: number;
  url: string;
  stderr(): string;
  /** Resolves when stderr (so far or later) matches. */
  logged(re: RegExp): Promise<void>;
  /** SIGTERM, and wait for the exit. */
  stop(): Promise<void>;
}

/** `ocisave serve PATH` on a free loopback port, with extra flags; resolves once it prints where it listens. */
export async function startServe(path: string, flags: string[] = []): Promise<ServedBundle> {
  const child = startCli(['serve', path, '--addr', '127.0.0.1:0', '--json', ...flags]);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  };
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`ocisave serve exited ${code}: ${err}`)));
  });
  const info = JSON.parse(line) as { host: string; url: string };
  const logged = (re: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (!re.test(err)) return;
        child.stderr!.off('data', check);
        resolve();
      };
      child.stderr!.on('data', check);
      check();
    });
  return { child, host: info.host, port: Number(info.host.split(':')[1]), url: info.url, stderr: () => err, logged, stop };
}
