// The package as a user gets it: `npm pack`, installed into a fresh project (offline, from the npm
// cache that `npm ci` filled, with the repository's lock for the dependencies), imported by name,
// a consumer .ts type-checked with the repository's tsc, and a save from a real registry through it.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from './support/cli.js';
import { run, runOk } from './support/exec.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const ROOT = projectRoot();
// npm pack and an offline install of ~60 packages took 30 s here under load: a safety net only.
const NPM_MS = 300_000;

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
let consumer: string;

/**
 * A lock for the consumer: the tarball, and the repository's own locked production dependencies
 * (so `npm ci --offline` needs only the tarballs `npm ci` cached, not registry metadata).
 */
function consumerLock(tarball: string): object {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const packages: Record<string, unknown> = { '': { name: 'consumer', dependencies: { ocisave: `file:${tarball}` } } };
  for (const [path, entry] of Object.entries<any>(lock.packages)) if (path !== '' && !entry.dev && !entry.link) packages[path] = entry;
  packages['node_modules/ocisave'] = { version: pkg.version, resolved: `file:${tarball}`, dependencies: pkg.dependencies, license: pkg.license };
  return { name: 'consumer', lockfileVersion: 3, requires: true, packages };
}

const CONSUMER_TS = `import { save, resolve, push, verify, serve, SCHEMAS, SaveError, type SaveResult, type OcisaveEvent } from 'ocisave';
const events: OcisaveEvent[] = [];
const result: SaveResult = await save({ references: [process.argv[2]!], out: 'out', format: 'registry', cacheDir: 'cache', platforms: 'all', onEvent: (e) => events.push(e) });
const digest: string = result.saved[0]!.digest;
const schema: 'ocisave.save/v1' = result.schema;
void [resolve, push, verify, serve, SCHEMAS.event, SaveError, digest, schema];
`;

// The same calls in plain JS (run), and one the type-check must refuse (an option save does not take).
const CONSUMER_JS = `import { save, verify, SCHEMAS } from 'ocisave';
import { createRequire } from 'node:module';
const events = [];
const result = await save({ references: [process.argv[2]], out: 'out', format: 'registry', cacheDir: 'cache', platforms: 'all', onEvent: (e) => events.push(e) });
const checked = await verify({ bundle: 'out' });
const schemaFile = createRequire(import.meta.url).resolve('ocisave/schemas/save.v1.json');
console.log(JSON.stringify({ result, ok: checked.ok, events: events.map((e) => e.schema + ' ' + e.type), schemaFile, eventSchema: SCHEMAS.event }));
`;
const BAD_TS = `import { save } from 'ocisave';\nawait save({ references: [], out: 'o', notAnOption: true });\n`;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-pack-'));
  consumer = join(work, 'consumer');
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 64 * 1024 });
});

afterAll(async () => {
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('packs, installs offline into a fresh project, type-checks a consumer and saves through the API', { timeout: 600_000 }, async () => {
    const packed = await runOk('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, timeoutMs: NPM_MS });
    const [info] = JSON.parse(packed.stdout);
    const files: string[] = info.files.map((f: { path: string }) => f.path);
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/workers/download.js', 'src/api/schemas/save.v1.json', 'src/api/schemas/event.v1.json']) expect(files).toContain(f);
    expect(files.some((f) => f.startsWith('test/') || f.startsWith('dist/test/'))).toBe(false);

    await runOk('mkdir', [consumer]);
    await runOk('mv', [join(work, info.filename), join(consumer, 'ocisave.tgz')]);
    await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module', dependencies: { ocisave: 'file:ocisave.tgz' } }));
    await writeFile(join(consumer, 'package-lock.json'), JSON.stringify(consumerLock('ocisave.tgz')));
    await runOk('npm', ['ci', '--offline', '--no-audit', '--no-fund'], { cwd: consumer, timeoutMs: NPM_MS });

    const tsconfig = { compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] } };
    await writeFile(join(consumer, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: ['consumer.ts'] }));
    await writeFile(join(consumer, 'consumer.ts'), CONSUMER_TS);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: consumer });
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    // The types are real: an option save does not have is refused.
    await writeFile(join(consumer, 'tsconfig.bad.json'), JSON.stringify({ ...tsconfig, files: ['bad.ts'] }));
    await writeFile(join(consumer, 'bad.ts'), BAD_TS);
    const bad = await run(process.execPath, [tsc, '-p', 'tsconfig.bad.json'], { cwd: consumer });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toContain('notAnOption');

    const ref = `${source.host}/app/web:1.0`;
    await writeFile(join(consumer, 'consumer.mjs'), CONSUMER_JS);
    const ran = await run(process.execPath, ['consumer.mjs', ref], { cwd: consumer });
    expect(ran.code, ran.stderr).toBe(0);
    const out = JSON.parse(ran.stdout);
    expect(out.result.schema).toBe('ocisave.save/v1');
    expect(out.result.saved.map((s: { digest: string }) => s.digest)).toEqual([fx.refs[ref]!.digest]);
    expect(out.ok).toBe(true);
    expect(out.schemaFile).toBe(join(consumer, 'node_modules', 'ocisave', 'src', 'api', 'schemas', 'save.v1.json'));
    expect(out.events).toContain('ocisave.event/v1 blob-done');
  });
});
