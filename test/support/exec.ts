// Run real consumers (skopeo, umoci, podman, the ocisave CLI) without a shell.
import { spawn } from 'node:child_process';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv; // merged over process.env
  input?: string | Buffer; // written to stdin, then stdin is closed
  timeoutMs?: number; // SIGKILL after this long (default 120 s)
}

export interface RunResult {
  command: string; // for messages: "skopeo inspect --raw ..."
  code: number | null; // null when killed by a signal
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

/** Run cmd with args; never throws for a non-zero exit (see runOk). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  const command = [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 120_000);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        command,
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        timedOut,
        durationMs: Date.now() - started,
      });
    });
    // EPIPE when the child ignores stdin is not an error worth reporting.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Like run(), but throws with the command, exit status and stderr unless it exits 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 120_000} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${r.command}: ${why}\n${r.stderr || r.stdout}`.trimEnd());
  }
  return r;
}

// --- skopeo 1.9 ----------------------------------------------------------------
// Test registries speak plain HTTP on 127.0.0.1: every docker:// side needs its
// TLS verification switched off, with the flag name skopeo 1.9 uses for it.

export interface SkopeoOptions extends RunOptions {
  /** "user:password" for docker:// sources (inspect/copy src). */
  creds?: string;
  /** "user:password" for a docker:// destination. */
  destCreds?: string;
}

const isDocker = (ref: string) => ref.startsWith('docker://');

/** Prefix docker:// when a reference has no transport ("127.0.0.1:5000/a/b:1" → docker://...). */
export function dockerRef(ref: string): string {
  return /^(docker|oci|oci-archive|docker-archive|dir|containers-storage|docker-daemon):/.test(ref) ? ref : `docker://${ref}`;
}

/** skopeo with raw args (no TLS flags added). */
export function skopeo(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runOk('skopeo', args, opts);
}

/** Manifest bytes exactly as served (`skopeo inspect --raw`). */
export async function skopeoInspectRaw(ref: string, opts: SkopeoOptions = {}): Promise<string> {
  const r = dockerRef(ref);
  const args = ['inspect', '--raw'];
  if (isDocker(r)) args.push('--tls-verify=false');
  if (opts.creds) args.push('--creds', opts.creds);
  else if (isDocker(r)) args.push('--no-creds');
  args.push(r);
  return (await skopeo(args, opts)).stdout;
}

/** `skopeo inspect` JSON (Digest, RepoTags, Layers, Architecture, ...); docker refs resolve the host platform unless extraArgs override. */
export async function skopeoInspect(
  ref: string,
  extraArgs: readonly string[] = [],
  opts: SkopeoOptions = {},
): Promise<Record<string, unknown>> {
  const r = dockerRef(ref);
  const args = ['inspect'];
  if (isDocker(r)) args.push('--tls-verify=false');
  if (opts.creds) args.push('--creds', opts.creds);
  else if (isDocker(r)) args.push('--no-creds');
  args.push(...extraArgs, r);
  return JSON.parse((await skopeo(args, opts)).stdout) as Record<string, unknown>;
}

/** Config blob of the image (`skopeo inspect --config`). */
export async function skopeoInspectConfig(ref: string, extraArgs: readonly string[] = [], opts: SkopeoOptions = {}) {
  return skopeoInspect(ref, ['--config', ...extraArgs], opts);
}

/**
 * `skopeo copy SRC DST`: e.g. skopeoCopy('127.0.0.1:5000/app/web:1.0', 'oci:/tmp/x:web', ['--all']).
 * Adds --src/--dest-tls-verify=false for docker:// sides; --preserve-digests is up to the caller.
 */
export async function skopeoCopy(
  src: string,
  dst: string,
  extraArgs: readonly string[] = [],
  opts: SkopeoOptions = {},
): Promise<RunResult> {
  const s = dockerRef(src);
  const d = dockerRef(dst);
  const args = ['copy', '--quiet'];
  if (isDocker(s)) args.push('--src-tls-verify=false', ...(opts.creds ? ['--src-creds', opts.creds] : ['--src-no-creds']));
  if (isDocker(d)) args.push('--dest-tls-verify=false', ...(opts.destCreds ? ['--dest-creds', opts.destCreds] : []));
  args.push(...extraArgs, s, d);
  return skopeo(args, { timeoutMs: 300_000, ...opts });
}

/** Tags of a repository (`skopeo list-tags`). */
export async function skopeoListTags(repoRef: string, opts: SkopeoOptions = {}): Promise<string[]> {
  const r = dockerRef(repoRef);
  const args = ['list-tags'];
  if (isDocker(r)) args.push('--tls-verify=false');
  if (opts.creds) args.push('--creds', opts.creds);
  else if (isDocker(r)) args.push('--no-creds');
  args.push(r);
  const out = JSON.parse((await skopeo(args, opts)).stdout) as { Tags: string[] };
  return out.Tags;
}

// --- umoci / podman --------------------------------------------------------------

/** `umoci unpack --image LAYOUT:TAG DEST` (rootless unless running as root). */
export function umociUnpack(layoutDir: string, tag: string, destBundle: string, opts: RunOptions = {}): Promise<RunResult> {
  const args = ['unpack'];
  if (process.getuid?.() !== 0) args.push('--rootless');
  args.push('--image', `${layoutDir}:${tag}`, destBundle);
  return runOk('umoci', args, opts);
}

/**
 * podman with a private vfs store under `root` (no daemon, no overlay mounts),
 * e.g. podman(root, ['load', '-i', tar]) then podman(root, ['images', '--format', 'json']).
 */
export function podman(root: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runOk(
    'podman',
    ['--storage-driver', 'vfs', '--root', `${root}/root`, '--runroot', `${root}/runroot`, '--tmpdir', `${root}/tmp`, ...args],
    { timeoutMs: 300_000, ...opts },
  );
}
