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
