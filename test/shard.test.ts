// --shard K/N: the partition is the documented hash (expected values computed with Python's
// hashlib, not with the code under test), every reference of a repository goes to one part, and
// the N parts cover the inputs exactly once.
import { describe, expect, it } from 'vitest';
import { parseShard, shardOf } from '../src/ref/shard.js';
import { shardInputs } from '../src/api/inputs.js';

// python3: int.from_bytes(sha256(b"registry/repository").digest()[:8], "big") % N + 1
const KNOWN: [string, string, number, number][] = [
  ['docker.io', 'library/alpine', 3, 2],
  ['docker.io', 'library/alpine', 7, 7],
  ['docker.io', 'library/alpine', 4096, 3749],
  ['quay.io', 'org/app', 3, 1],
  ['quay.io', 'org/app', 7, 3],
  ['127.0.0.1:5000', 'app/web', 7, 5],
  ['127.0.0.1:5000', 'app/web', 4096, 721],
];

describe('--shard', () => {
  it('is sha256("registry/repository")[0..8] mod N, plus 1', () => {
    for (const [registry, repository, n, want] of KNOWN) expect(shardOf(registry, repository, n), `${registry}/${repository} of ${n}`).toBe(want);
  });

  it('parses K/N and refuses anything else in one line naming --shard', () => {
    expect(parseShard('2/3')).toEqual({ index: 2, count: 3 });
    expect(parseShard('1/1')).toEqual({ index: 1, count: 1 });
    for (const bad of ['0/3', '4/3', '1/0', '3', '1/3/5', 'a/b', '-1/3', '1/4097', ' ']) expect(() => parseShard(bad), bad).toThrow(/^--shard "/);
  });

  it('keeps a repository together whatever the spelling, and the parts cover every input once', () => {
    const refs = [
      'alpine',
      'docker.io/library/alpine:3.19',
      'index.docker.io/library/alpine@sha256:' + 'a'.repeat(64),
      'quay.io/org/app:1',
      'quay.io/org/app:2',
      '127.0.0.1:5000/app/web:1.0',
      '127.0.0.1:5000/app/web:1.1',
      'registry.invalid/x/y/z:1',
      'Not A Reference!',
    ];
    const tagSets = [{ repository: 'quay.io/org/app', selector: {}, source: 'arguments' }];
    const parts = [1, 2, 3].map((index) => shardInputs({ index, count: 3 }, refs, tagSets));
    expect(parts.flatMap((p) => p.refs).sort()).toEqual([...refs].sort());
    expect(parts.flatMap((p) => p.tagSets)).toEqual(tagSets);
    const partOf = (ref: string) => parts.findIndex((p) => p.refs.includes(ref)) + 1;
    // alpine → docker.io/library/alpine: part 2 of 3 (table above), in all three spellings.
    for (const r of refs.slice(0, 3)) expect(partOf(r), r).toBe(2);
    expect(partOf('quay.io/org/app:1')).toBe(1);
    expect(partOf('quay.io/org/app:2')).toBe(1);
    expect(parts[0]!.tagSets).toEqual(tagSets);
    // A reference that does not parse goes to part 1, which reports it.
    expect(partOf('Not A Reference!')).toBe(1);
  });
});
