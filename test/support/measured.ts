// Runs the CLI with the net guard preloaded (test/support/net-guard.ts) and measures it: peak RSS
// from /proc (VmHWM polled while it runs, and as the child reports it at exit) and wall time. A
// child whose RSS passes `killAboveKb` is killed, so a regression cannot take the machine down.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collect, projectRoot, startCli, type CliResult } from './cli.js';

export interface Measured extends CliResult {
  /** Peak resident set of the CLI process, kB. */
  peakRssKb: number;
  ms: number;
}

const GUARD = path.join(projectRoot(), 'dist', 'test', 'support', 'net-guard.js');

function vmHwmKb(pid: number): number {
  try {
    return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0; // gone
  }
}

export async function runMeasured(args: string[], opts: { input?: string; timeoutMs?: number; killAboveKb?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Measured> {
  if (!existsSync(GUARD)) throw new Error(`${GUARD} missing: run npm run build`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ocisave-hwm-'));
  const hwmFile = path.join(dir, 'hwm');
  const started = Date.now();
  const child = startCli(args, { env: { ...opts.env, NODE_OPTIONS: `--import=${GUARD}`, OCISAVE_TEST_HWM_FILE: hwmFile } });
  let polled = 0;
  const poll = setInterval(() => {
    polled = Math.max(polled, vmHwmKb(child.pid!));
    if (polled > (opts.killAboveKb ?? 1_500_000)) child.kill('SIGKILL');
  }, 100);
  try {
    const result = await collect(child, { input: opts.input, timeoutMs: opts.timeoutMs ?? 120_000 });
    const reported = existsSync(hwmFile) ? Number(readFileSync(hwmFile, 'utf8')) : 0;
    return { ...result, peakRssKb: Math.max(polled, reported), ms: Date.now() - started };
  } finally {
    clearInterval(poll);
    rmSync(dir, { recursive: true, force: true });
  }
}
