// Typed errors (issue 14): a registry's distribution error code is parsed from a bounded prefix of
// its answer and only when it has the spec's shape; failures carry a code (and the registry's HTTP
// status) end to end, asserted against the real docker-registry and, for a corrupted blob, through
// the fault proxy.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf } from './support/cli.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { MT, pushBlobStream, pushImage, randomLayerStream } from './fixtures/index.js';
import { MAX_CODE_LENGTH, MAX_DETAIL_LENGTH, MAX_ERROR_BODY, parseDistributionError, registryAnswerError, RegistryError } from '../src/registry/errors.js';
import { codeOf, InvalidInputError, OcisaveError, reportOf, UsageError } from '../src/util/errors.js';
import { failureOf } from '../src/resolve/graph.js';
import { checkDigest } from '../src/ref/digest.js';
import { parseReference } from '../src/ref/reference.js';

const body = (errors: unknown) => Buffer.from(JSON.stringify({ errors }));

describe('parseDistributionError', () => {
  it('reads the first error of a distribution error body', () => {
    const b = body([
      { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'nope' } },
      { code: 'DENIED', message: 'second' },
    ]);
    expect(parseDistributionError(b)).toEqual({ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' });
  });

  it('gives nothing for empty, non-JSON, non-object or error-less bodies', () => {
    for (const b of ['', '<html>502 Bad Gateway</html>', 'MANIFEST_UNKNOWN', 'null', '[]', '{"errors":{}}', '{"errors":[]}', '{"errors":[null]}', '{"errors":["DENIED"]}', '{"errors":[{"code":"DENIED"']) {
      expect(parseDistributionError(Buffer.from(b)), b).toEqual({});
    }
    expect(parseDistributionError(undefined)).toEqual({});
  });

  it('drops codes that are not upper-case [A-Z_] of a sane length, keeping the message', () => {
    const odd = ['manifest_unknown', 'Manifest_Unknown', 'MANIFEST-UNKNOWN', 'MANIFEST UNKNOWN', '_UNKNOWN', 'X'.repeat(MAX_CODE_LENGTH + 1), 'DENIED\n', 'ÄRGER', '', 42, null, { code: 'DENIED' }];
    for (const code of odd) {
      expect(parseDistributionError(body([{ code, message: 'm' }])), JSON.stringify(code)).toEqual({ message: 'm' });
    }
    expect(parseDistributionError(body([{ code: 'X'.repeat(MAX_CODE_LENGTH) }])).code).toBe('X'.repeat(MAX_CODE_LENGTH));
    expect(parseDistributionError(body([{ code: 'TOOMANYREQUESTS' }]))).toEqual({ code: 'TOOMANYREQUESTS' });
  });

  it('makes the message one printable line of bounded length', () => {
    const e = parseDistributionError(body([{ code: 'DENIED', message: `line one\nline two\r\u001b[31mred\u0000${'x'.repeat(5000)}` }]));
    expect(e.code).toBe('DENIED');
    expect(e.message).toMatch(/^line one line two \[31mred x+…$/);
    expect(e.message!.length).toBe(MAX_DETAIL_LENGTH + 1);
  });

  it('looks at no more than MAX_ERROR_BODY bytes: a longer body yields nothing', () => {
    // A valid error whose padding pushes the end past the prefix: the cut JSON does not parse.
    const padded = body([{ code: 'DENIED', message: 'm', detail: 'p'.repeat(MAX_ERROR_BODY) }]);
    expect(parseDistributionError(padded)).toEqual({});
    // 8 MiB (512 times the bound) with a valid-looking start: only its prefix is decoded, and that is cut JSON.
    const huge = Buffer.alloc(8 * 1024 * 1024, 0x20);
    Buffer.from('{"errors":[{"code":"DENIED","message":"').copy(huge);
    expect(parseDistributionError(huge)).toEqual({});
    // Just under the bound, the same error parses.
    const fits = body([{ code: 'DENIED', message: 'm', detail: 'p'.repeat(MAX_ERROR_BODY - 100) }]);
    expect(fits.length).toBeLessThanOrEqual(MAX_ERROR_BODY);
    expect(parseDistributionError(fits).code).toBe('DENIED');
  });
});

describe('error codes', () => {
  it('a registry answer carries the code its body names, else its status or kind gives one', () => {
    const named = registryAnswerError('not-found', 'r/x:y: not found', 404, body([{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }]));
    expect(named).toBeInstanceOf(RegistryError);
    expect(named).toBeInstanceOf(OcisaveError);
    expect([named.kind, named.code, named.status]).toEqual(['not-found', 'NAME_UNKNOWN', 404]);
    expect(registryAnswerError('not-found', 'm', 404, Buffer.from('not json')).code).toBe('NOT_FOUND');
    expect(registryAnswerError('http', 'm', 429).code).toBe('TOOMANYREQUESTS');
    expect(registryAnswerError('http', 'm', 502).code).toBe('UNKNOWN');
    expect(new RegistryError('digest-mismatch', 'm').code).toBe('DIGEST_MISMATCH');
    expect(new RegistryError('insecure', 'm').code).toBe('INSECURE');
    expect(new RegistryError('bad-response', 'm', undefined, 'LIMIT').code).toBe('LIMIT');
  });

  it('local errors carry their codes, and a failure keeps code and status', () => {
    expect(() => checkDigest('sha256:abc', 'x')).toThrow(InvalidInputError);
    expect(codeOf(catching(() => checkDigest('md5:abc', 'x')))).toBe('INVALID_INPUT');
    expect(codeOf(catching(() => parseReference('UPPER//x')))).toBe('INVALID_INPUT');
    expect(codeOf(new UsageError('--x'))).toBe('USAGE');
    expect(codeOf(Object.assign(new Error('gone'), { code: 'ENOENT' }))).toBe('NOT_FOUND');
    expect(codeOf(new Error('plain'))).toBe('UNKNOWN');
    expect(failureOf('in', registryAnswerError('denied', 'no', 403, body([{ code: 'DENIED' }])))).toEqual({ input: 'in', error: 'no', code: 'DENIED', status: 403 });
    expect(reportOf('text')).toEqual({ error: 'text', code: 'UNKNOWN' });
  });
});

/** The JSON lines (progress events) of a --json run's stderr. */
function jsonLines(stderr: string): Record<string, unknown>[] {
  return stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('USAGE', () => {
  it('a bad flag value found past the parser exits 2 with one line', async () => {
    const r = await ocisave(['push', join(tmpdir(), 'ocisave-no-such-bundle.invalid'), '--to', 'Not A Host']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('ocisave: error: --to "Not A Host": "Not A Host" is not a registry host (HOST[:PORT][/prefix])');
  });
});

function catching(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('codes end to end, against docker-registry', () => {
  let source: RunningRegistry;
  let proxy: FaultProxy;
  let work: string;
  let layer: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ocisave-errors-'));
    source = await startRegistry();
    // Larger than INLINE_BYTES (64 KiB): the download pool fetches it, twice when it mismatches.
    const { stream, result } = randomLayerStream({ seed: 'errors', bytes: 256 * 1024, path: 'data/blob.bin' });
    const blob = await pushBlobStream(source.url, 'errors/app', stream, MT.dockerLayer);
    layer = blob.digest;
    await pushImage(source.url, 'errors/app', '1.0', { format: 'docker', layers: [{ digest: blob.digest, size: blob.size, diffId: (await result).diffId, repo: 'errors/app' }] });
    proxy = await startFaultProxy(source.url);
  });

  afterAll(async () => {
    await proxy?.stop();
    await source?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const save = (refs: string[], name: string) =>
    ocisave(['save', ...refs, '-o', join(work, name), '--cache', join(work, `cache-${name}`), '--json', '--keep-going', '--segment-size', '0']);

  it('a missing tag is MANIFEST_UNKNOWN with status 404, in the summary and in the resolve-failed events', async () => {
    // docker-registry (distribution 2.8) answers MANIFEST_UNKNOWN for a tag of a repository it does
    // not know too; NAME_UNKNOWN comes from the tags list (next test).
    const r = await save([`${source.host}/errors/app:nope`, `${source.host}/errors/none:1.0`, `${source.host}/errors/app:1.0`], 'missing');
    expect(r.code, r.stderr).toBe(1);
    const failures = summaryOf(r).failures as { input: string; code: string; status?: number; error: string }[];
    expect(failures.map((f) => [f.input, f.code, f.status]).sort()).toEqual([
      [`${source.host}/errors/app:nope`, 'MANIFEST_UNKNOWN', 404],
      [`${source.host}/errors/none:1.0`, 'MANIFEST_UNKNOWN', 404],
    ]);
    const events = jsonLines(r.stderr).filter((e) => e.type === 'resolve-failed');
    expect(events.map((e) => [e.input, e.code]).sort()).toEqual([
      [`${source.host}/errors/app:nope`, 'MANIFEST_UNKNOWN'],
      [`${source.host}/errors/none:1.0`, 'MANIFEST_UNKNOWN'],
    ]);
  });

  it('listing the tags of a missing repository is NAME_UNKNOWN with status 404', async () => {
    const r = await save([`${source.host}/errors/none`, `${source.host}/errors/app`, '--all-tags'], 'no-repo');
    expect(r.code, r.stderr).toBe(1);
    expect(summaryOf(r).failures).toEqual([
      { input: expect.stringContaining(`${source.host}/errors/none`), code: 'NAME_UNKNOWN', status: 404, error: expect.stringContaining('no such repository') },
    ]);
    expect(summaryOf(r).images).toBe(1);
  });

  it('a blob that stays corrupt is DIGEST_MISMATCH, in the summary and in its blob-failed event', async () => {
    proxy.setFaults([{ method: 'GET', path: new RegExp(layer), corruptByteAt: 1000 }]);
    try {
      const r = await save([`${proxy.host}/errors/app:1.0`], 'corrupt');
      expect(r.code, r.stderr).toBe(1);
      expect(summaryOf(r).failures).toEqual([{ input: `${proxy.host}/errors/app:1.0`, code: 'DIGEST_MISMATCH', error: expect.stringContaining(layer) }]);
      const failed = jsonLines(r.stderr).filter((e) => e.type === 'blob-failed');
      expect(failed).toEqual([expect.objectContaining({ digest: layer, code: 'DIGEST_MISMATCH' })]);
    } finally {
      proxy.setFaults([]);
    }
  });
});
