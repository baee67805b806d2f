// Issue 5, auth end to end: the real registry behind htpasswd basic auth and behind bearer tokens
// from the test token server; credentials from config.json and --username/--password-stdin; a
// token that expires in the middle of a blob download is refreshed and the download resumes.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, summaryOf, type CliResult } from './support/cli.js';
import { skopeoInspectRaw } from './support/exec.js';
import { startFaultProxy } from './support/proxy.js';
import { serveLayout, startRegistry, startTokenServer, type RunningRegistry, type TokenServer } from './support/registry.js';
import { seedStandardFixtures, sha256 } from './fixtures/index.js';
import type { FixtureSet } from './fixtures/model.js';

const sha = sha256;
const b64 = (s: string) => Buffer.from(s).toString('base64');

const USER = 'alice';
const SECRET = 'S3cret-basic-Pa55';
const WRONG = 'wr0ng-Pa55-never-print';
const TOKEN_USER = 'bob';
const TOKEN_SECRET = 'T0ken-user-S3cret';
const BIG = 24 << 20;

let work: string;
const stops: (() => Promise<void>)[] = [];
let basic: RunningRegistry;
let basicFx: FixtureSet;
let tokenFx: FixtureSet;
let tokenData: string;

/** Nothing from the machine's own docker/podman config may leak in: a fresh HOME and config dirs. */
async function cleanEnv(name: string, auths?: Record<string, { auth: string }>): Promise<NodeJS.ProcessEnv> {
  const home = join(work, `home-${name}`);
  await mkdir(join(home, 'docker'), { recursive: true });
  if (auths) await writeFile(join(home, 'docker', 'config.json'), JSON.stringify({ auths }));
  return {
    HOME: home,
    DOCKER_CONFIG: join(home, 'docker'),
    REGISTRY_AUTH_FILE: join(home, 'no-auth.json'),
    XDG_RUNTIME_DIR: join(home, 'run'),
    XDG_CONFIG_HOME: join(home, 'config'),
    OCISAVE_CACHE: join(home, 'cache'),
  };
}

const errorLines = (r: CliResult) => r.stderr.split('\n').filter((l) => l.startsWith('ocisave: error:'));

/** Exit 1 with one error line naming the registry, and the wrong password nowhere in the output. */
function expectWrongPasswordRejected(r: CliResult, host: string): void {
  expect(r.code).toBe(1);
  const lines = errorLines(r);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toContain(host);
  expect(lines[0]).toMatch(/rejected the credentials/);
  expectNoSecret(r, WRONG);
}

function expectNoSecret(r: CliResult, ...secrets: string[]): void {
  for (const s of secrets) {
    for (const form of [s, b64(s), b64(`${USER}:${s}`), b64(`${TOKEN_USER}:${s}`)]) {
      expect(r.stdout).not.toContain(form);
      expect(r.stderr).not.toContain(form);
    }
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-auth-'));
  basic = await startRegistry({ htpasswd: { username: USER, password: SECRET } });
  stops.push(() => basic.stop());

  // The token registry's storage is seeded by a plain registry first (the fixture pusher speaks
  // Basic auth only), then served by registries that demand bearer tokens.
  tokenData = join(work, 'token-data');
  const seeder = await startRegistry({ dataDir: tokenData });
  [basicFx, tokenFx] = await Promise.all([
    seedStandardFixtures({ url: basic.url, username: USER, password: SECRET }, { skipBig: true }),
    seedStandardFixtures(seeder.url, { bigBlobBytes: BIG }),
  ]);
  await seeder.stop();
}, 120_000);

afterAll(async () => {
  await Promise.all(stops.map((s) => s()));
  await rm(work, { recursive: true, force: true });
});

describe('basic auth (htpasswd)', () => {
  const ref = () => basicFx.references.find((r) => r.endsWith('/app/web:1.0'))!;

  it('without credentials fails with one clear line naming the registry', async () => {
    const out = join(work, 'basic-none');
    const r = await ocisave(['save', ref(), '-o', out], { env: await cleanEnv('basic-none') });
    expect(r.code).toBe(1);
    const lines = errorLines(r);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toContain(basic.host);
    expect(lines[0]).toMatch(/no credentials/);
    expect(existsSync(out)).toBe(false);
  });

  it('uses auths from $DOCKER_CONFIG/config.json', async () => {
    const env = await cleanEnv('basic-config', { [basic.host]: { auth: b64(`${USER}:${SECRET}`) } });
    const out = join(work, 'basic-config');
    const r = await ocisave(['save', ref(), '-o', out, '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(1);
    expectNoSecret(r, SECRET);
    const served = await serveLayout(out);
    stops.push(() => served.stop());
    expect(sha(await skopeoInspectRaw(ref().replace(basic.host, served.host)))).toBe(basicFx.refs[ref()]!.digest);
  });

  it('uses --username with --password-stdin', async () => {
    const r = await ocisave(['save', ref(), '-o', join(work, 'basic-stdin'), '--username', USER, '--password-stdin', '--json'], {
      env: await cleanEnv('basic-stdin'),
      input: `${SECRET}\n`,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(1);
    expectNoSecret(r, SECRET);
  });

  it('a wrong password fails clearly and is never printed', async () => {
    for (const json of [false, true]) {
      const r = await ocisave(['save', ref(), '-o', join(work, 'basic-wrong'), '--username', USER, '--password-stdin', ...(json ? ['--json'] : [])], {
        env: await cleanEnv('basic-wrong'),
        input: WRONG,
      });
      expectWrongPasswordRejected(r, basic.host);
    }
  });
});

describe('credentials across commands', () => {
  it('save --lock after resolve (every manifest already cached) still authenticates the blob downloads', async () => {
    // The save asks the registry for blobs only: the client must learn the auth challenge itself.
    const env = await cleanEnv('lock', { [basic.host]: { auth: b64(`${USER}:${SECRET}`) } });
    const ref = basicFx.references.find((r) => r.endsWith('/app/web:1.1'))!;
    const lock = join(work, 'basic.lock.json');
    const r = await ocisave(['resolve', ref, '--lock', lock], { env });
    expect(r.code, r.stderr).toBe(0);
    const s = await ocisave(['save', '--lock', lock, '-o', join(work, 'basic-lock'), '--json'], { env });
    expect(s.code, s.stderr).toBe(0);
    expect(summaryOf(s).downloaded.blobs).toBe(basicFx.refs[ref]!.blobs.length);
    expectNoSecret(s, SECRET);
  });
});

describe('bearer token auth', () => {
  let ts: TokenServer;
  let reg: RunningRegistry;

  beforeAll(async () => {
    ts = await startTokenServer({ users: { [TOKEN_USER]: TOKEN_SECRET } });
    reg = await startRegistry({ dataDir: tokenData, tokenAuth: ts.tokenAuth, readOnly: true });
    stops.push(() => reg.stop(), () => ts.stop());
  });

  const refOn = (host: string, repoTag: string) => tokenFx.references.find((r) => r.endsWith(`/${repoTag}`))!.replace(tokenFx.registry, host);

  it('anonymous access is denied with one clear line', async () => {
    const r = await ocisave(['save', refOn(reg.host, 'app/web:1.0'), '-o', join(work, 'tok-anon')], { env: await cleanEnv('tok-anon') });
    expect(r.code).toBe(1);
    const lines = errorLines(r);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toContain(reg.host);
    expect(ts.requests().some((q) => q.user === null && q.scope.includes('repository:app/web:pull'))).toBe(true);
  });

  it('pulls with credentials exchanged for a token', async () => {
    const env = await cleanEnv('tok-ok', { [reg.host]: { auth: b64(`${TOKEN_USER}:${TOKEN_SECRET}`) } });
    const refs = ['app/web:1.0', 'charts/mysql:8.8.19'].map((t) => refOn(reg.host, t));
    const r = await ocisave(['save', ...refs, '-o', join(work, 'tok-ok'), '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).images).toBe(2);
    expectNoSecret(r, TOKEN_SECRET);
    const granted = ts.requests().filter((q) => q.user === TOKEN_USER);
    expect(granted.map((q) => q.scope).flat()).toEqual(expect.arrayContaining(['repository:app/web:pull', 'repository:charts/mysql:pull']));
  });

  it("sends a config.json registrytoken as the bearer token, without asking the token server", async () => {
    const res = await fetch(`${ts.realm}?service=${ts.service}&scope=repository:app/web:pull`, {
      headers: { authorization: `Basic ${b64(`${TOKEN_USER}:${TOKEN_SECRET}`)}` },
    });
    const { token } = (await res.json()) as { token: string };
    const env = await cleanEnv('tok-registrytoken');
    await writeFile(join(env.DOCKER_CONFIG!, 'config.json'), JSON.stringify({ auths: { [reg.host]: { registrytoken: token } } }));
    const before = ts.requests().length;
    const r = await ocisave(['save', refOn(reg.host, 'app/web:1.0'), '-o', join(work, 'tok-registrytoken'), '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(ts.requests().length).toBe(before);
    expectNoSecret(r, token);
  });

  it('a wrong password is rejected by the token server, clearly and without printing it', async () => {
    const r = await ocisave(['save', refOn(reg.host, 'app/web:1.0'), '-o', join(work, 'tok-wrong'), '--username', TOKEN_USER, '--password-stdin'], {
      env: await cleanEnv('tok-wrong'),
      input: WRONG,
    });
    expectWrongPasswordRejected(r, reg.host);
  });

  it('refreshes a token that expires in the middle of a blob download, and resumes the blob', async () => {
    // distribution accepts a token up to 60 s past its `exp` (clock-skew leeway), so an honest
    // short expiry would need a test longer than a minute. Instead the token server signs tokens
    // whose exp is 57 s in the past (the registry accepts them for about 3 s) and reports a
    // negative expires_in, which clients treat as the 60 s default: the client believes its token
    // good while the registry already refuses it, which is the situation the scheduler's
    // re-dispatch on 401 exists for. The fault proxy paces the first transfer of the big blob past
    // that point and then cuts it, so the worker's resuming Range request meets a 401.
    const shortTs = await startTokenServer({ users: { [TOKEN_USER]: TOKEN_SECRET }, expiresIn: -57 });
    const shortReg = await startRegistry({ dataDir: tokenData, tokenAuth: shortTs.tokenAuth, readOnly: true });
    const proxy = await startFaultProxy(shortReg.url);
    stops.push(() => proxy.stop(), () => shortReg.stop(), () => shortTs.stop());
    const bigRef = tokenFx.references.find((r) => r.endsWith('/big/blob:latest'))!;
    const bigLayer = tokenFx.refs[bigRef]!.layers![0]!;
    const blobPath = `/v2/big/blob/blobs/${bigLayer}`;
    // count 2: when the machine is slow enough for the token to be stale before the blob's first
    // request, that request's 401 uses up one, and the transfer with the fresh token the other.
    proxy.setFaults([{ method: 'GET', path: `^${blobPath}$`, count: 2, bandwidthBytesPerSec: 1_500_000, dropAfterBytes: 6 << 20 }]);

    const env = await cleanEnv('tok-expire', { [proxy.host]: { auth: b64(`${TOKEN_USER}:${TOKEN_SECRET}`) } });
    // --segment-size 0: one whole-blob transfer to cut and resume. Adaptive ranges would split this
    // blob on a 1.5 MB/s link (8 MiB ranges), which is not what this test is about.
    const r = await ocisave(['save', bigRef.replace(tokenFx.registry, proxy.host), '-o', join(work, 'tok-expire'), '--segment-size', '0', '--json'], { env });
    expect(r.code, r.stderr).toBe(0);
    const summary = summaryOf(r);
    expect(summary.images).toBe(1);

    // What the registry saw for the blob: the paced transfer, cut; the resume from the checkpoint
    // refused (token expired); the same resume again with a fresh token. (Under heavy load the
    // token may already be stale for the very first request: a 401 before it is fine too.)
    const gets = proxy.stats().requests.filter((q) => q.path === blobPath);
    const first = gets.findIndex((q) => q.status === 200);
    expect(first, JSON.stringify(gets)).toBeGreaterThanOrEqual(0);
    expect(gets[first]!.range).toBeUndefined();
    expect(gets.slice(0, first).every((q) => q.status === 401)).toBe(true);
    const rest = gets.slice(first + 1);
    const resumeAt = /^bytes=(\d+)-$/.exec(rest[0]?.range ?? '')?.[1];
    expect(Number(resumeAt), JSON.stringify(gets)).toBeGreaterThan(0);
    expect(rest.map((q) => [q.status, q.range])).toEqual([
      [401, `bytes=${resumeAt}-`],
      [206, `bytes=${resumeAt}-`],
    ]);
    expect(summary.resumedBytes).toBe(Number(resumeAt));
    const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(events.some((e) => e.type === 'blob-retry' && e.digest === bigLayer && /token/.test(e.reason))).toBe(true);
    const tokens = shortTs.requests().filter((q) => q.user === TOKEN_USER && q.scope.includes('repository:big/blob:pull'));
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    expectNoSecret(r, TOKEN_SECRET);
  });
});

