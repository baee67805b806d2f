// The CLI starts lean: --version, --help and usage errors load commander and the flag parsers, not
// the library's heavy packages (undici, lmdb, piscina, hash-wasm... ~0.45 CPU-s of loading between
// them, issue 17). Each command imports its library call when its action runs (src/cli/main.ts).
// What a run loads is recorded by a module loader hook (ES modules) and require's cache (CommonJS,
// which undici and parts of lmdb and piscina are), so no clock is involved.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, type CliResult } from './support/cli.js';

/** The packages only an action needs. */
const HEAVY = ['undici', 'lmdb', 'piscina', 'hash-wasm', 'semver', 'smol-toml', 'yaml', 'tar-stream'];

// Loader hooks run on their own thread in node 20: they append each module's URL to REC_OUT.
const HOOKS = `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.REC_OUT, url + '\\n');
  return next(url, context);
}
`;
const PRELOAD = `import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
register('./hooks.mjs', import.meta.url);
const cjs = createRequire(import.meta.url)('node:module')._cache;
process.on('exit', () => appendFileSync(process.env.REC_OUT, Object.keys(cjs).map((f) => 'file://' + f + '\\n').join('')));
`;

let work: string;
let preload: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-startup-'));
  await writeFile(join(work, 'hooks.mjs'), HOOKS);
  await writeFile(join(work, 'preload.mjs'), PRELOAD);
  preload = pathToFileURL(join(work, 'preload.mjs')).href;
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let runs = 0;
/** Runs the CLI; returns its result and the packages (node_modules/<name>) it loaded. */
async function recorded(args: string[]): Promise<{ r: CliResult; packages: Set<string>; modules: string[] }> {
  const out = join(work, `loaded-${++runs}.txt`);
  await writeFile(out, '');
  const r = await ocisave(args, { env: { REC_OUT: out, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${preload}` } });
  const modules = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  const packages = new Set(modules.flatMap((m) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(m)?.[1] ?? []));
  return { r, packages, modules };
}

describe('start-up', () => {
  it('an offline resolve loads lmdb and undici (the check itself), but not the pool, the hashers or the parsers it does not run', async () => {
    // It opens the cache (lmdb) and loads the registry client (undici, through require), and asks
    // no registry. Nothing downloads, so piscina stays unloaded; no tag set, YAML or tar is read.
    const { r, packages } = await recorded(['resolve', '--offline', 'registry.invalid/app:1', '--cache', join(work, 'cache')]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('registry.invalid/app:1');
    expect([...packages]).toEqual(expect.arrayContaining(['commander', 'lmdb', 'undici']));
    expect(['piscina', 'hash-wasm', 'semver', 'yaml', 'tar-stream'].filter((p) => packages.has(p))).toEqual([]);
  });

  // Paths inside the test's directory, in case a regression ran further than the usage error.
  const inWork = (name: string) => join(work, name);
  const cases: [string, () => string[], number][] = [
    ['--version', () => ['--version'], 0],
    ['--help', () => ['--help'], 0],
    ['save --help', () => ['save', '--help'], 0],
    ['mirror --help', () => ['mirror', '--help'], 0],
    ['save without -o (usage error)', () => ['save', 'registry.invalid/app:1', '--cache', inWork('cache')], 2],
    ['save --format bogus (usage error)', () => ['save', 'registry.invalid/app:1', '-o', inWork('never-written'), '--cache', inWork('cache'), '--format', 'bogus'], 2],
    ['resolve with a bad reference (usage error)', () => ['resolve', 'registry.invalid/A B', '--cache', inWork('cache')], 2],
    ['cache prune --older-than 3x (usage error)', () => ['cache', 'prune', '--older-than', '3x', '--cache', inWork('cache')], 2],
  ];
  it.each(cases)('%s loads none of the heavy packages', async (_name, args, code) => {
    const { r, packages, modules } = await recorded(args());
    expect(r.code, r.stderr).toBe(code);
    expect(modules.some((m) => m.endsWith('/dist/src/cli/main.js')), 'the recorder saw the CLI').toBe(true);
    expect(packages.has('commander')).toBe(true);
    expect(HEAVY.filter((p) => packages.has(p))).toEqual([]);
  });
});
