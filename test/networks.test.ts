// Issue 12: real networks. A private CA made with openssl; the real docker-registry serving TLS with
// it (and one requiring client certificates); tinyproxy as the forward proxy (its log shows each
// CONNECT); registries.conf mirrors for an origin that cannot be resolved. Registries reached
// through the proxy are named registry.ocisave.test (127.0.0.1 in /etc/hosts, see .ci/setup):
// Go's rules, which ocisave follows, never proxy "localhost" or 127.0.0.0/8.
import { mkdir, mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ocisave, projectRoot, summaryOf } from './support/cli.js';
import { startFaultProxy, type FaultProxy } from './support/proxy.js';
import { freePort, startRegistry, type RunningRegistry } from './support/registry.js';
import { startForwardProxy, type ForwardProxy } from './support/forward-proxy.js';
import { makeCa, type TestCa } from './support/tls.js';
import { pushBlob, pushImage, seededBytes } from './fixtures/index.js';

const NAME = 'registry.ocisave.test';
const REPO = 'net/app';
let work: string;
let ca: TestCa;
let plain: RunningRegistry;
let tlsReg: RunningRegistry;
let mtlsReg: RunningRegistry;
let pushReg: RunningRegistry;
let mirrorProxy: FaultProxy;
let digest: string;
/** Bigger than the 64 KiB the main thread fetches itself: this one goes through a download worker. */
const BIG = 300 * 1024;
let bigDigest: string;
let n = 0;

/** A fresh directory under the test's work dir. */
async function fresh(name: string): Promise<string> {
  const dir = join(work, `${name}-${++n}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A certs.d root holding HOST/ with the given files (name → source path). */
async function certsD(host: string, files: Record<string, string>): Promise<string> {
  const root = await fresh('certs.d');
  await mkdir(join(root, host));
  for (const [name, src] of Object.entries(files)) await copyFile(src, join(root, host, name));
  return root;
}

const portOf = (r: RunningRegistry) => r.host.split(':')[1]!;
/** The environment of every CLI run: no proxy, no certs.d or registries.conf of the machine. */
const baseEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
  HTTP_PROXY: '', HTTPS_PROXY: '', NO_PROXY: '', http_proxy: '', https_proxy: '', no_proxy: '',
  OCISAVE_CERTS_D: join(work, 'no-certs.d'),
  XDG_CONFIG_HOME: join(work, 'no-config'),
  ...extra,
});

async function save(ref: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const out = join(await fresh('out'), 'bundle');
  const r = await ocisave(['save', ref, '-o', out, '--cache', await fresh('cache'), '--json', '--registries-conf', join(work, 'empty.conf'), ...args], { env: baseEnv(env) });
  return { ...r, out };
}

async function savedTag(out: string, tag = '1.0'): Promise<string> {
  return readFile(join(out, 'docker/registry/v2/repositories', REPO, '_manifests/tags', tag, 'current/link'), 'utf8');
}

/** Error lines of a failed run (the summary and progress are JSON). */
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('ocisave: error:'));

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ocisave-networks-'));
  await writeFile(join(work, 'empty.conf'), '');
  ca = await makeCa(join(work, 'ca'));
  const server = await ca.server([NAME, 'localhost', '127.0.0.1']);
  const probeClient = await ca.client('probe');
  plain = await startRegistry();
  const big = await pushBlob(plain.url, REPO, seededBytes('networks-big', BIG), 'application/vnd.oci.image.layer.v1.tar');
  bigDigest = big.digest;
  const image = await pushImage(plain.url, REPO, '1.0', { format: 'oci', layers: [{ digest: big.digest, size: big.size, diffId: big.digest, repo: REPO }] });
  digest = image.digest;
  // The same storage served over TLS, and over TLS with client certificates required.
  [tlsReg, mtlsReg, pushReg] = await Promise.all([
    startRegistry({ dataDir: plain.dataDir, keepDataDir: true, tls: server }),
    startRegistry({ dataDir: plain.dataDir, keepDataDir: true, tls: { ...server, clientCa: ca.cert, probeClient } }),
    startRegistry({ tls: server }),
  ]);
  mirrorProxy = await startFaultProxy(plain.url);
}, 120_000);

afterAll(async () => {
  await mirrorProxy?.stop();
  await Promise.all([tlsReg?.stop(), mtlsReg?.stop(), pushReg?.stop()]);
  await plain?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('credentials and a token realm over plain HTTP (issue 16)', () => {
  it('an HTTPS registry whose token realm is http:// on another host gets no credentials: refused before any connection', async () => {
    // A counting server stands in for the realm; the net guard resolves realm.invalid to 127.0.0.1,
    // so a connection that should never happen would land here and be counted.
    let hits = 0;
    const realm = createServer((_req, res) => {
      hits++;
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => realm.listen(0, '127.0.0.1', resolve));
    const port = (realm.address() as { port: number }).port;
    const server = await ca.server([NAME, 'localhost', '127.0.0.1'], 'realm-server');
    const reg = await startRegistry({
      dataDir: plain.dataDir,
      keepDataDir: true,
      tls: server,
      tokenAuth: { realm: `http://realm.invalid:${port}/token`, service: 'ocisave-test', issuer: 'ocisave-test', rootCertBundle: ca.cert },
    });
    try {
      const certDir = await fresh('cert-dir');
      await copyFile(ca.cert, join(certDir, 'ca.crt'));
      const out = join(await fresh('out'), 'bundle');
      const guard = join(projectRoot(), 'dist', 'test', 'support', 'net-guard.js');
      const r = await ocisave(
        ['save', `${reg.host}/${REPO}:1.0`, '-o', out, '--cache', await fresh('cache'), '--cert-dir', certDir, '--registries-conf', join(work, 'empty.conf'), '--username', 'alice', '--password-stdin'],
        { env: baseEnv({ NODE_OPTIONS: `--import=${guard}` }), input: 'realm-secret-pw' },
      );
      expect(r.code).toBe(1);
      const lines = errorLines(r.stderr);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`refusing to send the credentials for ${reg.host.replace(/\./g, '\\.')} in clear to realm\\.invalid:${port} .*the token server must use https://`));
      expect(r.stderr + r.stdout).not.toContain('realm-secret-pw');
      expect(hits).toBe(0);
    } finally {
      await reg.stop();
      await new Promise((resolve) => realm.close(resolve));
    }
  });
});

describe('TLS with a private CA', () => {
  it('refuses an unknown CA by default with one line naming the host and the fixes, even on loopback', async () => {
    const r = await save(`${tlsReg.host}/${REPO}:1.0`, []);
    expect(r.code).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`TLS to ${tlsReg.host} failed`);
    expect(lines[0]).toContain('unknown authority');
    expect(lines[0]).toContain(`certs.d/${tlsReg.host}/`);
    expect(lines[0]).toContain('--cert-dir');
    expect(lines[0]).toContain('--tls-verify=false');
    // HTTPS was spoken, not plain HTTP to a TLS port.
    expect(r.stderr).not.toContain('HTTP 400');
  });

  it('trusts the CA from a certs.d directory named HOST:PORT, the blob worker included', async () => {
    const root = await certsD(tlsReg.host, { 'ca.crt': ca.cert });
    const r = await save(`${tlsReg.host}/${REPO}:1.0`, [], { OCISAVE_CERTS_D: root });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).downloaded.bytes).toBeGreaterThanOrEqual(BIG);
    expect(await savedTag(r.out)).toBe(digest);
  });

  it('trusts the CA from --cert-dir', async () => {
    const dir = join(await certsD('x', { 'my-ca.crt': ca.cert }), 'x');
    const r = await save(`${tlsReg.host}/${REPO}:1.0`, ['--cert-dir', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(await savedTag(r.out)).toBe(digest);
  });

  it('reaches the registry with --tls-verify=false', async () => {
    const r = await save(`${tlsReg.host}/${REPO}:1.0`, ['--tls-verify=false']);
    expect(r.code, r.stderr).toBe(0);
    expect(await savedTag(r.out)).toBe(digest);
  });

  it('presents a client certificate (client.cert + client.key) where the registry requires one', async () => {
    const client = await ca.client('ocisave');
    const without = await save(`${mtlsReg.host}/${REPO}:1.0`, [], { OCISAVE_CERTS_D: await certsD(mtlsReg.host, { 'ca.crt': ca.cert }) });
    expect(without.code).toBe(1);
    const lines = errorLines(without.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`TLS to ${mtlsReg.host} failed: the registry wants a client certificate`);

    const root = await certsD(mtlsReg.host, { 'ca.crt': ca.cert, 'client.cert': client.cert, 'client.key': client.key });
    const r = await save(`${mtlsReg.host}/${REPO}:1.0`, [], { OCISAVE_CERTS_D: root });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).downloaded.bytes).toBeGreaterThanOrEqual(BIG);
    expect(await savedTag(r.out)).toBe(digest);
  });

  it('rejects a client certificate without its key, naming the file', async () => {
    const client = await ca.client('lonely');
    const root = await certsD(mtlsReg.host, { 'ca.crt': ca.cert, 'client.cert': client.cert });
    const r = await save(`${mtlsReg.host}/${REPO}:1.0`, [], { OCISAVE_CERTS_D: root });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('client certificate client.cert has no client.key');
  });
});

describe('HTTP(S)_PROXY and NO_PROXY through tinyproxy', () => {
  let proxy: ForwardProxy;
  let authProxy: ForwardProxy;
  let deadProxy: string;
  let tlsRoot: string;
  const ref = () => `${NAME}:${portOf(tlsReg)}/${REPO}:1.0`;

  beforeAll(async () => {
    [proxy, authProxy] = await Promise.all([startForwardProxy(), startForwardProxy({ basicAuth: { username: 'alice', password: 'pr0xy-s3cret' } })]);
    deadProxy = `http://127.0.0.1:${await freePort()}`;
    tlsRoot = await certsD(`${NAME}:${portOf(tlsReg)}`, { 'ca.crt': ca.cert });
  }, 60_000);

  afterAll(async () => {
    await Promise.all([proxy?.stop(), authProxy?.stop()]);
  });

  it('tunnels HTTPS with CONNECT, on the main thread and in the download workers', async () => {
    const before = proxy.connects().length;
    const r = await save(ref(), [], { HTTPS_PROXY: proxy.url, OCISAVE_CERTS_D: tlsRoot });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).downloaded.bytes).toBeGreaterThanOrEqual(BIG);
    expect(await savedTag(r.out)).toBe(digest);
    // One tunnel at least for the main thread's manifest requests, one for the worker's blob.
    const tunnels = proxy.connects().slice(before);
    expect(tunnels.length).toBeGreaterThanOrEqual(2);
    expect(new Set(tunnels)).toEqual(new Set([`CONNECT ${NAME}:${portOf(tlsReg)}`]));
  });

  it('takes the lower-case https_proxy too, and pushes through the proxy', async () => {
    const saved = await save(ref(), [], { https_proxy: proxy.url, OCISAVE_CERTS_D: tlsRoot });
    expect(saved.code, saved.stderr).toBe(0);
    const target = `${NAME}:${portOf(pushReg)}`;
    const before = proxy.connects().length;
    const r = await ocisave(['push', saved.out, '--to', `${target}/pushed`, '--json', '--registries-conf', join(work, 'empty.conf')], {
      env: baseEnv({ HTTPS_PROXY: proxy.url, OCISAVE_CERTS_D: await certsD(target, { 'ca.crt': ca.cert }) }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(proxy.connects().slice(before)).toContain(`CONNECT ${target}`);
    const back = await save(`${target}/pushed/${REPO}:1.0`, [], { OCISAVE_CERTS_D: await certsD(target, { 'ca.crt': ca.cert }) });
    expect(back.code, back.stderr).toBe(0);
  });

  it('reaches an insecure plain-HTTP registry through HTTP_PROXY after HTTPS failed through HTTPS_PROXY', async () => {
    const host = `${NAME}:${portOf(plain)}`;
    const file = join(await fresh('conf'), 'registries.conf');
    await writeFile(file, `[[registry]]\nlocation = "${host}"\ninsecure = true\n`);
    const before = proxy.connects().length;
    const r = await ocisave(['save', `${host}/${REPO}:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--json', '--registries-conf', file], {
      env: baseEnv({ HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url }),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).downloaded.bytes).toBeGreaterThanOrEqual(BIG);
    expect(proxy.connects().slice(before)).toContain(`CONNECT ${host}`);
  });

  it('sends proxy credentials from the URL, and never prints them', async () => {
    const url = new URL(authProxy.url);
    url.username = 'alice';
    url.password = 'pr0xy-s3cret';
    const ok = await save(ref(), [], { HTTPS_PROXY: url.href, OCISAVE_CERTS_D: tlsRoot });
    expect(ok.code, ok.stderr).toBe(0);
    expect(authProxy.connects()).toContain(`CONNECT ${NAME}:${portOf(tlsReg)}`);

    url.password = 'wr0ng-s3cret';
    const bad = await save(ref(), [], { HTTPS_PROXY: url.href, OCISAVE_CERTS_D: tlsRoot });
    expect(bad.code).toBe(1);
    const lines = errorLines(bad.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`proxy ${authProxy.url} (HTTPS_PROXY) asked for credentials or refused them`);
    url.username = '';
    url.password = '';
    const none = await save(ref(), [], { HTTPS_PROXY: url.href, OCISAVE_CERTS_D: tlsRoot });
    expect(none.code).toBe(1);
    expect(errorLines(none.stderr)[0]).toContain(`proxy ${authProxy.url} (HTTPS_PROXY) asked for credentials or refused them (HTTP 407)`);
    for (const text of [ok.stderr, ok.stdout, bad.stderr, bad.stdout]) {
      expect(text).not.toContain('s3cret');
      expect(text).not.toContain('alice:');
    }
  });

  it('fails clearly, naming the proxy, when the proxy is down', async () => {
    const r = await save(ref(), [], { HTTPS_PROXY: deadProxy, OCISAVE_CERTS_D: tlsRoot });
    expect(r.code).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`through proxy ${deadProxy} (HTTPS_PROXY): ECONNREFUSED`);
  }, 60_000);

  it('goes direct for NO_PROXY names (domain suffix) and for loopback, whatever the proxy', async () => {
    const before = proxy.connects().length;
    const bySuffix = await save(ref(), [], { HTTPS_PROXY: deadProxy, NO_PROXY: 'example.invalid, .ocisave.test', OCISAVE_CERTS_D: tlsRoot });
    expect(bySuffix.code, bySuffix.stderr).toBe(0);
    const byHostPort = await save(ref(), [], { HTTPS_PROXY: deadProxy, no_proxy: `${NAME}:${portOf(tlsReg)}`, OCISAVE_CERTS_D: tlsRoot });
    expect(byHostPort.code, byHostPort.stderr).toBe(0);
    const loopback = await save(`${tlsReg.host}/${REPO}:1.0`, [], { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url, OCISAVE_CERTS_D: await certsD(tlsReg.host, { 'ca.crt': ca.cert }) });
    expect(loopback.code, loopback.stderr).toBe(0);
    const plainLoopback = await save(`${plain.host}/${REPO}:1.0`, [], { HTTPS_PROXY: deadProxy, HTTP_PROXY: deadProxy });
    expect(plainLoopback.code, plainLoopback.stderr).toBe(0);
    expect(proxy.connects().length).toBe(before);
  });

  it('refuses a proxy variable that is not a URL, without repeating it', async () => {
    const r = await save(ref(), [], { HTTPS_PROXY: 'http://bob:hunter2@[bad', OCISAVE_CERTS_D: tlsRoot });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('HTTPS_PROXY is not a valid proxy URL');
    expect(r.stderr).not.toContain('hunter2');
  });
});

describe('registries.conf', () => {
  async function conf(text: string): Promise<string> {
    const file = join(await fresh('conf'), 'registries.conf');
    await writeFile(file, text);
    return file;
  }

  it('takes everything from a mirror for an origin that cannot be resolved, and names images by the origin', async () => {
    mirrorProxy.resetStats();
    const file = await conf(`[[registry]]\nprefix = "origin.ocisave.invalid"\n\n[[registry.mirror]]\nlocation = "${mirrorProxy.host}"\n`);
    const out = join(await fresh('out'), 'bundle');
    const r = await ocisave(['save', `origin.ocisave.invalid/${REPO}:1.0`, '-o', out, '--cache', await fresh('cache'), '--json', '--registries-conf', file], { env: baseEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('origin.ocisave.invalid:');
    expect(r.stderr).not.toContain('warning');
    expect(await savedTag(out)).toBe(digest);
    const paths = mirrorProxy.stats().requests.map((q) => q.path);
    expect(paths).toContain(`/v2/${REPO}/manifests/1.0`);
    expect(paths).toContain(`/v2/${REPO}/blobs/${bigDigest}`);
  });

  it('rewrites a prefix to its location and a mirror path, and never asks the origin what the mirror has', async () => {
    const origin = await startFaultProxy(plain.url);
    try {
      mirrorProxy.resetStats();
      // The mirror serves the repository under another path: mirror.example/prefix → REPO's parent.
      const file = await conf(
        `[[registry]]\nprefix = "corp.ocisave.invalid/team"\nlocation = "${origin.host}/net"\n\n[[registry.mirror]]\nlocation = "${mirrorProxy.host}/net"\n`,
      );
      const out = join(await fresh('out'), 'bundle');
      const r = await ocisave(['save', 'corp.ocisave.invalid/team/app:1.0', '-o', out, '--cache', await fresh('cache'), '--json', '--registries-conf', file], { env: baseEnv() });
      expect(r.code, r.stderr).toBe(0);
      expect(origin.stats().requests).toEqual([]);
      expect(mirrorProxy.stats().requests.map((q) => q.path)).toContain(`/v2/${REPO}/manifests/1.0`);
      expect(await readFile(join(out, 'docker/registry/v2/repositories/team/app/_manifests/tags/1.0/current/link'), 'utf8')).toBe(digest);

      // A tag the mirror lacks comes from the location.
      const missing = await ocisave(['save', 'corp.ocisave.invalid/team/app:2.0', '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--registries-conf', file], { env: baseEnv() });
      expect(missing.code).toBe(1);
      expect(origin.stats().requests.map((q) => q.path)).toContain(`/v2/${REPO}/manifests/2.0`);
    } finally {
      await origin.stop();
    }
  });

  it('refuses a blocked prefix, naming the file', async () => {
    const file = await conf(`[[registry]]\nlocation = "${plain.host}"\nblocked = true\n`);
    const r = await ocisave(['save', `${plain.host}/${REPO}:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--registries-conf', file], { env: baseEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${plain.host}/${REPO}: blocked by ${file}`);
  });

  it('marks a registry insecure: no certificate verification', async () => {
    const file = await conf(`[[registry]]\nlocation = "${tlsReg.host}"\ninsecure = true\n`);
    const r = await ocisave(['save', `${tlsReg.host}/${REPO}:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--json', '--registries-conf', file], { env: baseEnv() });
    expect(r.code, r.stderr).toBe(0);
  });

  it('lets an insecure registry with a name (not loopback) fall back to plain HTTP; without it, one line says why', async () => {
    const ref = `${NAME}:${portOf(plain)}/${REPO}:1.0`;
    const refused = await save(ref, []);
    expect(refused.code).toBe(1);
    const lines = errorLines(refused.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`TLS to ${NAME}:${portOf(plain)} failed: it does not speak TLS`);
    expect(lines[0]).toContain('--plain-http');
    const file = await conf(`[[registry]]\nlocation = "${NAME}:${portOf(plain)}"\ninsecure = true\n`);
    const r = await ocisave(['save', ref, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--json', '--registries-conf', file], { env: baseEnv() });
    expect(r.code, r.stderr).toBe(0);
    const flag = await save(ref, ['--tls-verify=false']);
    expect(flag.code, flag.stderr).toBe(0);
  });

  it('is read from $XDG_CONFIG_HOME/containers/registries.conf; a malformed file is one clear line', async () => {
    const home = await fresh('xdg');
    await mkdir(join(home, 'containers'));
    await writeFile(join(home, 'containers/registries.conf'), `[[registry]]\nlocation = "${plain.host}"\nblocked = true\n`);
    const r = await ocisave(['save', `${plain.host}/${REPO}:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache')], { env: baseEnv({ XDG_CONFIG_HOME: home }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('blocked by');

    const bad = await conf('[[registry]]\nlocation = 5\n');
    const b = await ocisave(['save', `${plain.host}/${REPO}:1.0`, '-o', join(await fresh('out'), 'b'), '--registries-conf', bad], { env: baseEnv() });
    expect(b.code).toBe(1);
    expect(b.stderr.trim()).toBe(`ocisave: error: registries.conf ${bad}: registry[0].location must be a string`);
  });
});

describe('credentials per registry', () => {
  it('--creds-registry sends --username/--password-stdin to that registry only; --authfile names an auth file', async () => {
    const secured = await startRegistry({ htpasswd: { username: 'carol', password: 'c4rol-pass' } });
    const watched = await startFaultProxy(plain.url);
    try {
      const creds = { url: secured.url, username: 'carol', password: 'c4rol-pass' };
      const layer = await pushBlob(creds, 'other/img', seededBytes('networks-creds', 1000), 'application/vnd.oci.image.layer.v1.tar');
      await pushImage(creds, 'other/img', '1.0', { format: 'oci', layers: [{ digest: layer.digest, size: layer.size, diffId: layer.digest, repo: 'other/img' }] });
      const out = join(await fresh('out'), 'b');
      const r = await ocisave(
        ['save', `${secured.host}/other/img:1.0`, `${watched.host}/${REPO}:1.0`, '-o', out, '--cache', await fresh('cache'), '--json', '--registries-conf', join(work, 'empty.conf'),
          '--username', 'carol', '--password-stdin', '--creds-registry', secured.host],
        { env: baseEnv(), input: 'c4rol-pass\n' },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(summaryOf(r).images).toBe(2);
      expect(watched.stats().requests.length).toBeGreaterThan(0);
      expect(watched.stats().requests.filter((q) => q.authorization)).toEqual([]);
      expect(r.stderr + r.stdout).not.toContain('c4rol-pass');

      // The same account from an auth file named on the command line (skopeo's --authfile).
      const authfile = join(await fresh('auth'), 'auth.json');
      await writeFile(authfile, JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from('carol:c4rol-pass').toString('base64') } } }));
      const viaFile = await ocisave(
        ['save', `${secured.host}/other/img:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--json', '--registries-conf', join(work, 'empty.conf'), '--authfile', authfile],
        { env: baseEnv({ DOCKER_CONFIG: join(work, 'no-docker-config'), REGISTRY_AUTH_FILE: '' }) },
      );
      expect(viaFile.code, viaFile.stderr).toBe(0);
      expect(viaFile.stderr + viaFile.stdout).not.toContain('c4rol-pass');
      const without = await ocisave(
        ['save', `${secured.host}/other/img:1.0`, '-o', join(await fresh('out'), 'b'), '--cache', await fresh('cache'), '--registries-conf', join(work, 'empty.conf')],
        { env: baseEnv({ DOCKER_CONFIG: join(work, 'no-docker-config'), REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: join(work, 'no-runtime') }) },
      );
      expect(without.code).toBe(1);
      expect(without.stderr).toContain('no credentials found');
    } finally {
      await watched.stop();
      await secured.stop();
    }
  });

  it('--creds-registry needs --username, and takes a host only', async () => {
    const a = await ocisave(['save', `${plain.host}/${REPO}:1.0`, '-o', join(work, 'never'), '--creds-registry', plain.host], { env: baseEnv() });
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('--creds-registry names the registry for --username');
    const b = await ocisave(['save', `${plain.host}/${REPO}:1.0`, '-o', join(work, 'never'), '--creds-registry', 'https://x/y'], { env: baseEnv() });
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('--creds-registry');
  });
});
