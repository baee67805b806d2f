// Usage errors exit 2 in every command that takes references or platforms, with one line naming
// the bad value, before anything is resolved, downloaded or written.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave } from './support/cli.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-usage-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('usage errors', () => {
  const cases: [string, (out: string) => string[], RegExp][] = [
    ['save, a malformed reference', (out) => ['save', 'host.invalid/a//b:1', '-o', out], /invalid reference "host\.invalid\/a\/\/b:1"/],
    ['save, a malformed digest', (out) => ['save', 'host.invalid/a@sha256:abc', '-o', out], /digest "sha256:abc" is not sha256/],
    ['save, a bad --platform', (out) => ['save', 'host.invalid/a:1', '--platform', 'linux/', '-o', out], /invalid platform "linux\/"/],
    ['resolve, a malformed reference', () => ['resolve', 'host.invalid/A B'], /invalid reference/],
    ['resolve, a bad --platform', () => ['resolve', 'host.invalid/a:1', '--platform', 'a/b/c/d'], /invalid platform "a\/b\/c\/d"/],
    ['unpack, a malformed reference', (out) => ['unpack', 'host.invalid/a//b', out], /invalid reference "host\.invalid\/a\/\/b"/],
    ['unpack, a bad --platform', (out) => ['unpack', 'host.invalid/a:1', out, '--platform', 'linux'], /invalid platform "linux"/],
  ];
  it.each(cases)('%s exits 2 with one line naming it, and writes nothing', async (name, args, message) => {
    const out = join(work, name.replace(/\W+/g, '-'));
    const r = await ocisave([...args(out), '--cache', join(work, 'cache')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('error:'))).toHaveLength(1);
    expect(existsSync(out)).toBe(false);
  });
});
