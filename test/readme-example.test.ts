// The README's "As a library" example, taken from README.md as it stands and run against a real
// registry through the package's own name (so the README cannot rot).
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, projectRoot, summaryOf } from './support/cli.js';
import { run } from './support/exec.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { seedStandardFixtures } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

/** The first ```js block after the "## As a library" heading. */
function libraryExample(readme: string): string {
  const section = readme.slice(readme.indexOf('\n## As a library\n'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  if (!m || readme.indexOf('\n## As a library\n') < 0) throw new Error('README.md has no ```js block under "## As a library"');
  return m[1]!;
}

let source: RunningRegistry;
let fx: FixtureSet;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-readme-'));
  source = await startRegistry();
  fx = await seedStandardFixtures(source.url, { bigBlobBytes: 64 * 1024 });
});

afterAll(async () => {
  await source?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('README "As a library"', () => {
  it('the example runs as written (its registry swapped for the test one) and saves what it names', async () => {
    const code = libraryExample(readFileSync(join(projectRoot(), 'README.md'), 'utf8'));
    expect(code).toContain("from 'ocisave'");
    expect(code).toContain('localhost:5000/');
    // `ocisave` resolves to this package, as it would for a user who installed it.
    await mkdir(join(work, 'node_modules'));
    await symlink(projectRoot(), join(work, 'node_modules', 'ocisave'));
    await writeFile(join(work, 'example.mjs'), code.replaceAll('localhost:5000', source.host));
    const r = await run(process.execPath, ['example.mjs'], { cwd: work });
    expect(r.code, r.stderr).toBe(0);

    const want = fx.refs[`${source.host}/library/alpine:3.19`]!;
    const platforms = want.children.map((c) => c.platform).sort().join(',');
    const [reference, printed] = r.stdout.trim().split(' ');
    expect(reference).toBe(`${source.host}/library/alpine@${want.digest}`);
    expect(printed!.split(',').sort().join(',')).toBe(platforms);
    expect(existsSync(join(work, 'cache'))).toBe(true);
    const verified = summaryOf(await ocisave(['verify', join(work, 'bundle'), '--json']));
    expect(verified.ok).toBe(true);
    expect(verified.tags).toBe(1);
  });
});
