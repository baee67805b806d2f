// Versioned JSON (issue 14): the real CLI's --json output of every command, and every progress event
// line, validates against the JSON Schema files in src/api/schemas/ (ajv), and names its schema.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect, ocisave, projectRoot, startCli, type CliResult } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const SCHEMA_DIR = join(projectRoot(), 'src', 'api', 'schemas');
const ajv = new Ajv({ allErrors: true });
const validators = new Map<string, ValidateFunction>();
for (const file of readdirSync(SCHEMA_DIR)) {
  const schema = JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8'));
  validators.set(schema.$id, ajv.compile(schema));
}

/** The value validates against the schema it names, and that is the one expected. */
function expectSchema(value: any, id: string): void {
  expect(value?.schema).toBe(id);
  const validate = validators.get(id)!;
  expect(validate, `no schema file for ${id}`).toBeDefined();
  expect(validate(value), `${id}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value).slice(0, 2000)}`).toBe(true);
}

function jsonResult(r: CliResult, id: string): any {
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  const value = JSON.parse(lines[0]!);
  expectSchema(value, id);
  return value;
}

/** Every stderr line is an event that validates; returns them. */
function events(r: CliResult): any[] {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  const parsed = lines.map((l) => JSON.parse(l));
  for (const e of parsed) expectSchema(e, 'ocisave.event/v1');
  return parsed;
}

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;
let refs: string[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-schemas-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 64 * 1024 });
  refs = fx.references.filter((r) => /\/(library\/alpine:3\.19|app\/web:1\.0|charts\/webapp:0\.1\.0)$/.test(r));
});

afterAll(async () => {
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('--json output validates against src/api/schemas', () => {
  it('has one schema file per name, each $id matching its file', () => {
    const ids = [...validators.keys()].sort();
    expect(ids).toContain('ocisave.save/v1');
    for (const file of readdirSync(SCHEMA_DIR)) expect(JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8')).$id).toBe(`ocisave.${file.replace(/\.v1\.json$/, '')}/v1`);
  });

  it('save: the result lists each saved image with its reference, digest and platforms; every event line validates', async () => {
    expect(refs).toHaveLength(3);
    const r = await ocisave(['save', ...refs, '-o', join(work, 'bundle'), '--cache', join(work, 'cache'), '--platform', 'all', '--json']);
    const result = jsonResult(r, 'ocisave.save/v1');
    const byInput = new Map(result.saved.map((s: any) => [s.input, s]));
    for (const ref of refs) {
      const want = fx.refs[ref]!;
      const row: any = byInput.get(ref);
      expect(row?.reference).toBe(`${want.registry}/${want.repository}@${want.digest}`);
      expect(row.digest).toBe(want.digest);
      expect(row.tag).toBe(want.tag);
      expect([...row.platforms].sort()).toEqual(want.children.length ? want.children.map((c) => c.platform).sort() : ['any']);
    }
    const types = new Set(events(r).map((e) => e.type));
    for (const t of ['resolved', 'plan', 'blob-done', 'link']) expect(types).toContain(t);
  });

  it('a failed input is a failure object in the save result (--keep-going), and a resolve-failed event', async () => {
    const missing = `${source.host}/no/such:1`;
    const r = await ocisave(['save', refs[0]!, missing, '-o', join(work, 'partial'), '--cache', join(work, 'cache'), '--keep-going', '--json']);
    expect(r.code).toBe(1);
    const result = JSON.parse(r.stdout.trim());
    expectSchema(result, 'ocisave.save/v1');
    expect(result.failures.map((f: any) => f.input)).toEqual([missing]);
    expect(events(r).some((e) => e.type === 'resolve-failed' && e.input === missing)).toBe(true);
  });

  it('resolve', async () => {
    const r = await ocisave(['resolve', ...refs, '--cache', join(work, 'cache'), '--json']);
    const result = jsonResult(r, 'ocisave.resolve/v1');
    expect(result.images.map((i: any) => i.digest).sort()).toEqual(refs.map((ref) => fx.refs[ref]!.digest).sort());
    events(r);
  });

  it('verify, merge, convert and list-images', async () => {
    expect(jsonResult(await ocisave(['verify', join(work, 'bundle'), '--json']), 'ocisave.verify/v1').ok).toBe(true);
    jsonResult(await ocisave(['merge', join(work, 'bundle'), '-o', join(work, 'merged'), '--json']), 'ocisave.merge/v1');
    const converted = jsonResult(await ocisave(['convert', join(work, 'bundle'), '-o', join(work, 'converted'), '--format', 'oci', '--json']), 'ocisave.convert/v1');
    expect(converted.images).toHaveLength(3);
    const list = join(work, 'imageList');
    await writeFile(list, `${refs.join('\n')}\n`);
    expect(jsonResult(await ocisave(['list-images', list, '--json']), 'ocisave.list-images/v1').images).toHaveLength(3);
  });

  it('push: the result and every push event line', async () => {
    const r = await ocisave(['push', join(work, 'bundle'), '--to', `${source.host}/pushed`, '--json']);
    const result = jsonResult(r, 'ocisave.push/v1');
    expect(result.failures).toEqual([]);
    const types = new Set(events(r).map((e) => e.type));
    for (const t of ['blob', 'manifest', 'tag']) expect(types).toContain(t);
  });

  it('mirror and mirror --dry-run', async () => {
    const cache = join(work, 'cache');
    const plan = await ocisave(['mirror', ...refs, '--to', `${source.host}/mirrored`, '--cache', cache, '--dry-run', '--json']);
    expect(jsonResult(plan, 'ocisave.mirror-plan/v1').images).toHaveLength(3);
    const r = await ocisave(['mirror', ...refs, '--to', `${source.host}/mirrored`, '--cache', cache, '--json']);
    expect(jsonResult(r, 'ocisave.mirror/v1').images).toBe(3);
    expect(events(r).some((e) => e.type === 'tag')).toBe(true);
  });

  it('unpack', async () => {
    const alpine = refs.find((r) => r.includes('alpine'))!;
    const r = await ocisave(['unpack', alpine, join(work, 'rootfs'), '--platform', 'linux/amd64', '--cache', join(work, 'cache'), '--json']);
    expect(jsonResult(r, 'ocisave.unpack/v1').manifest).toBe(fx.refs[alpine]!.children.find((c) => c.platform === 'linux/amd64')!.digest);
    events(r);
  });

  it('cache ls, du, verify and prune', async () => {
    const cache = join(work, 'cache');
    const ls = jsonResult(await ocisave(['cache', 'ls', '--cache', cache, '--json']), 'ocisave.cache-ls/v1');
    expect(ls.blobs.length).toBeGreaterThan(0);
    jsonResult(await ocisave(['cache', 'du', '--cache', cache, '--json']), 'ocisave.cache-du/v1');
    expect(jsonResult(await ocisave(['cache', 'verify', '--cache', cache, '--json']), 'ocisave.cache-verify/v1').corrupt).toEqual([]);
    jsonResult(await ocisave(['cache', 'prune', '--older-than', '30d', '--dry-run', '--cache', cache, '--json']), 'ocisave.cache-prune/v1');
  });

  it('serve prints a serve result once listening', async () => {
    const child = startCli(['serve', join(work, 'bundle'), '--addr', '127.0.0.1:0', '--json']);
    const first = new Promise<string>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.once('exit', () => resolve(out));
    });
    const done = collect(child);
    const info = JSON.parse(await first);
    child.kill('SIGTERM');
    await done;
    expectSchema(info, 'ocisave.serve/v1');
    expect(info.url).toBe(`http://127.0.0.1:${info.port}`);
  });
});
