// Unit tests where the parsers live (issue 14): references, tar headers, auth challenges, backoff.
// Expected values are written out by hand (tar bytes built here byte by byte, from POSIX ustar/pax).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TarStore } from '../src/bundle/store.js';
import { parseReference } from '../src/ref/reference.js';
import { parseChallenge, parseChallenges } from '../src/registry/challenge.js';
import { backoffMs } from '../src/registry/retry.js';

const DIGEST = `sha256:${'0123456789abcdef'.repeat(4)}`;

describe('parseReference', () => {
  it('normalises Docker Hub names as docker does', () => {
    expect(parseReference('ubuntu')).toEqual({ registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' });
    expect(parseReference('bitnami/redis:7.2')).toEqual({ registry: 'docker.io', repository: 'bitnami/redis', tag: '7.2' });
    expect(parseReference('docker.io/ubuntu')).toEqual({ registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' });
    expect(parseReference('index.docker.io/ubuntu:22.04')).toEqual({ registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' });
    expect(parseReference('registry-1.docker.io/library/x')).toEqual({ registry: 'docker.io', repository: 'library/x', tag: 'latest' });
    expect(parseReference('  alpine:3.19  ')).toEqual({ registry: 'docker.io', repository: 'library/alpine', tag: '3.19' });
  });

  it('keeps hosts, ports and IPv6 literals, and tells a port from a tag', () => {
    expect(parseReference('localhost/x')).toEqual({ registry: 'localhost', repository: 'x', tag: 'latest' });
    expect(parseReference('localhost:5000/x')).toEqual({ registry: 'localhost:5000', repository: 'x', tag: 'latest' });
    expect(parseReference('127.0.0.1:5000/a/b:1.0')).toEqual({ registry: '127.0.0.1:5000', repository: 'a/b', tag: '1.0' });
    expect(parseReference('[::1]:5000/x:v')).toEqual({ registry: '[::1]:5000', repository: 'x', tag: 'v' });
    expect(parseReference('quay.io/a/b/c')).toEqual({ registry: 'quay.io', repository: 'a/b/c', tag: 'latest' });
  });

  it('pins by digest, and keeps a tag given with it as a name only', () => {
    expect(parseReference(`alpine@${DIGEST}`)).toEqual({ registry: 'docker.io', repository: 'library/alpine', digest: DIGEST });
    expect(parseReference(`r.example:443/a:t@${DIGEST}`)).toEqual({ registry: 'r.example:443', repository: 'a', tag: 't', digest: DIGEST });
  });

  it('takes an uppercase first component for a host (as docker does) and refuses an uppercase repository', () => {
    expect(parseReference('Registry/app')).toEqual({ registry: 'Registry', repository: 'app', tag: 'latest' });
    expect(() => parseReference('Ubuntu')).toThrow('invalid reference "Ubuntu": repository "Ubuntu" must be lowercase components separated by "/"');
    expect(() => parseReference('quay.io/Org/app')).toThrow(/repository "Org\/app" must be lowercase/);
  });

  it('refuses names longer than 255 characters, host included, and quotes them shortened', () => {
    const at255 = `r.io/${'a'.repeat(250)}`;
    expect(parseReference(at255).repository).toHaveLength(250);
    expect(() => parseReference(`r.io/${'a'.repeat(251)}`)).toThrow(/name is 256 characters long; at most 255 are allowed/);
    // Docker Hub's implied library/ counts too: 246 + "docker.io/library/" = 264.
    expect(() => parseReference('a'.repeat(246))).toThrow(/name is 264 characters long/);
    const huge = `x/${'b'.repeat(100_000)}`;
    expect(() => parseReference(huge)).toThrow(/… \(100002 characters\)/);
  });

  it('refuses bad digests, tags and repositories with a message naming the part', () => {
    expect(() => parseReference('x@sha256:abc')).toThrow('digest "sha256:abc" is not sha256:<64 hex>');
    expect(() => parseReference(`x@sha512:${'a'.repeat(128)}`)).toThrow(/digest "sha512:a+" is not sha256/);
    expect(() => parseReference(`x@${DIGEST.toUpperCase().replace('SHA256', 'sha256')}`)).toThrow(/is not sha256:<64 hex>/);
    expect(() => parseReference(`x:${'t'.repeat(129)}`)).toThrow(/tag "t{129}" is not valid/);
    expect(() => parseReference('x:-t')).toThrow(/tag "-t" is not valid/);
    expect(() => parseReference('a//b')).toThrow(/repository "a\/\/b" must be lowercase/);
    expect(() => parseReference('')).toThrow(/: empty$/);
    expect(() => parseReference('a b')).toThrow(/contains whitespace/);
  });

  it('refuses hostile hosts that would change the URL they are put in', () => {
    for (const host of ['127.0.0.1:5000#', 'evil.example?q', 'ex%2fa.example', 'h.example:', 'h.example:99999', 'h.example:0', 'h:port', '-h.example', 'h_x.example:1']) {
      expect(() => parseReference(`${host}/x`), host).toThrow(`registry host "${host}" is not a host name or [IPv6], with an optional port 1-65535`);
    }
    expect(() => parseReference('a\x00.example/x')).toThrow('registry host "a?.example" is not a host name');
  });
});

// --- tar bytes by hand (POSIX ustar; pax records "LEN key=value\n", LEN counting itself) ---

const BLOCK = 512;

function header(name: string, size: number, type: string, sizeField = size): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100, 'ascii');
  h.write('0000000\0', 108, 'ascii');
  h.write('0000000\0', 116, 'ascii');
  h.write(`${sizeField.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  h.write('00000000000\0', 136, 'ascii');
  h.write(type, 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  // Checksum: the header's bytes summed with the checksum field read as eight spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK)]);

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (`${len}${body}`.length !== len) len++;
  return `${len}${body}`;
}

const file = (name: string, data: Buffer) => [header(name, data.length, '0'), pad(data)];
const pax = (records: string) => [header('PaxHeader', Buffer.byteLength(records), 'x'), pad(Buffer.from(records))];
const end = () => Buffer.alloc(2 * BLOCK);

describe('TarStore.indexTar', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ocisave-parsers-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function storeOf(name: string, parts: Buffer[]): Promise<TarStore> {
    const path = join(dir, name);
    await writeFile(path, Buffer.concat(parts));
    return TarStore.open(path);
  }

  it('checks its own hand-built records: pax lengths count themselves', () => {
    expect(paxRecord('size', '5')).toBe('9 size=5\n');
    expect(paxRecord('path', 'a'.repeat(89))).toBe(`98 path=${'a'.repeat(89)}\n`);
    expect(paxRecord('path', 'a'.repeat(91))).toBe(`101 path=${'a'.repeat(91)}\n`); // 2 digits would make it 100: 3 are needed
  });

  it('takes a pax size over the header size, and finds the next member after that many bytes', async () => {
    // As Go and GNU tar write a member too large for the 11 octal digits: header size 0, the real size in pax.
    const big = Buffer.from('0123456789'.repeat(60)); // 600 bytes: two blocks
    const after = Buffer.from('the member after\n');
    const store = await storeOf('pax-size.tar', [...pax(paxRecord('size', '600')), header('big', 600, '0', 0), pad(big), ...file('after', after), end()]);
    expect(await store.size('big')).toBe(600);
    expect((await store.read('big')).equals(big)).toBe(true);
    expect(await store.size('after')).toBe(after.length);
    expect((await store.read('after')).toString()).toBe('the member after\n');
  });

  it('takes a pax path over the header name (a name beyond 100 characters)', async () => {
    const long = `blobs/sha256/${'f'.repeat(120)}`;
    const data = Buffer.from('long-named');
    const store = await storeOf('pax-path.tar', [...pax(paxRecord('path', long)), ...file('truncated-name', data), ...file('plain', Buffer.from('p')), end()]);
    expect((await store.read(long)).toString()).toBe('long-named');
    expect(await store.size('truncated-name')).toBeUndefined();
    expect(await store.list('blobs/sha256')).toEqual([long]);
    // A pax header applies to the next member only.
    expect((await store.read('plain')).toString()).toBe('p');
  });

  it('refuses a pax size that is not a byte count', async () => {
    for (const bad of ['12abc', '-1', '1e3', '99999999999999999999']) {
      await expect(storeOf(`bad-size-${bad}.tar`, [...pax(paxRecord('size', bad)), ...file('x', Buffer.from('x')), end()]), bad).rejects.toThrow(
        `the pax size "${bad}" for the entry at byte 1024 is not a byte count`,
      );
    }
  });

  it('refuses an extended header that claims more than 1 MiB instead of reading it into memory', async () => {
    const claim = 8 * 1024 * 1024 * 1024; // 8 GiB, in the 11-digit octal field
    await expect(storeOf('huge-pax.tar', [header('PaxHeader', claim, 'x'), end()])).rejects.toThrow(
      `the extended header at byte 0 claims ${claim} bytes (at most 1048576)`,
    );
    await expect(storeOf('huge-longname.tar', [header('././@LongLink', 2 * 1024 * 1024, 'L'), end()])).rejects.toThrow(/claims 2097152 bytes/);
  });
});

describe('parseChallenge', () => {
  it('reads a Bearer challenge whose quoted scope holds commas', () => {
    expect(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' },
    });
  });

  it('keeps each challenge of one header apart, and answers Bearer before Basic', () => {
    const header = 'Basic realm="basic-realm", Bearer realm="https://t.example/token",service="s"';
    expect(parseChallenges(header)).toEqual([
      { scheme: 'basic', params: { realm: 'basic-realm' } },
      { scheme: 'bearer', params: { realm: 'https://t.example/token', service: 's' } },
    ]);
    expect(parseChallenge(header)).toEqual({ scheme: 'bearer', params: { realm: 'https://t.example/token', service: 's' } });
    // The same across several WWW-Authenticate headers.
    expect(parseChallenge(['Basic realm="b"', 'Bearer realm="t"'])).toEqual({ scheme: 'bearer', params: { realm: 't' } });
    expect(parseChallenge(['Negotiate', 'Basic realm="b"'])).toEqual({ scheme: 'basic', params: { realm: 'b' } });
  });

  it('reads unquoted values, escaped quotes, and parameter names in any case', () => {
    expect(parseChallenge('BEARER Realm=https://t.example/token, error="invalid_token"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://t.example/token', error: 'invalid_token' },
    });
    expect(parseChallenge('Basic realm="say \\"hi\\""')).toEqual({ scheme: 'basic', params: { realm: 'say "hi"' } });
    expect(parseChallenge('Basic')).toEqual({ scheme: 'basic', params: {} });
  });

  it('gives nothing for empty or separator-only headers, and ends on hostile input', () => {
    expect(parseChallenge(undefined)).toBeUndefined();
    expect(parseChallenge('')).toBeUndefined();
    expect(parseChallenge(' , ,')).toBeUndefined();
    expect(parseChallenge('"""')).toBeUndefined();
    // An unterminated quote does not swallow the scheme; the value is what is there.
    expect(parseChallenge('Bearer realm="unterminated')).toEqual({ scheme: 'bearer', params: { realm: '"unterminated' } });
    // 60,000 characters of openings and backslashes (beyond undici's 16 KiB header limit): one scheme.
    const hostile = `Bearer ${'a="'.repeat(10_000)}realm="${'\\'.repeat(30_000)}`;
    expect(parseChallenges(hostile).map((c) => c.scheme)).toEqual(['bearer']);
  });
});

describe('backoffMs', () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it('doubles from 200 ms with up to 25% jitter on top, capped at 10 s', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    expect([1, 2, 3, 4].map((a) => backoffMs(a))).toEqual([200, 400, 800, 1600]);
    vi.spyOn(Math, 'random').mockReturnValue(0.999);
    expect(backoffMs(1)).toBeCloseTo(249.95, 5);
    expect(backoffMs(3)).toBeCloseTo(999.8, 5);
    expect(backoffMs(7)).toBe(10_000); // 12,800 before the cap
    expect(backoffMs(5000)).toBe(10_000); // 2^4999 overflows to Infinity: still the cap
    expect(backoffMs(2, undefined, 50)).toBeCloseTo(124.975, 5);
  });

  it('keeps real jitter inside [base·2^(n-1), 1.25·base·2^(n-1)]', () => {
    for (let i = 0; i < 200; i++) {
      const ms = backoffMs(2);
      expect(ms).toBeGreaterThanOrEqual(400);
      expect(ms).toBeLessThan(500);
    }
  });

  it('honours Retry-After in seconds, capped at 60 s', () => {
    expect(backoffMs(1, '3')).toBe(3000);
    expect(backoffMs(1, ' 0 ')).toBe(0);
    expect(backoffMs(1, ['2', '9'])).toBe(2000);
    expect(backoffMs(1, '3600')).toBe(60_000);
    expect(backoffMs(1, '9'.repeat(400))).toBe(60_000);
  });

  it('honours Retry-After as an HTTP date, from now, capped at 60 s', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-12-02T03:00:00Z'));
    expect(backoffMs(1, 'Wed, 02 Dec 2026 03:00:30 GMT')).toBe(30_000);
    expect(backoffMs(1, 'Wed, 02 Dec 2026 02:59:00 GMT')).toBe(0);
    expect(backoffMs(1, 'Wed, 02 Dec 2026 04:00:00 GMT')).toBe(60_000);
    expect(backoffMs(1, 'Wednesday, 02-Dec-26 03:00:10 GMT')).toBe(10_000); // RFC 850 form, still accepted
  });

  it('ignores a Retry-After in neither form, for the exponential wait', () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    // Number() reads these as -1, 16, 1000 and 1.5; Date.parse() reads "-1" and "1.5" as dates in 2001.
    for (const bad of ['-1', '0x10', '1e3', '1.5', 'soon', 'Infinity']) expect(backoffMs(3, bad), bad).toBe(800);
    expect(backoffMs(3, null)).toBe(800);
    expect(backoffMs(3, [])).toBe(800);
  });
});
