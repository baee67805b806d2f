// Real distribution registry (`docker-registry serve`) on 127.0.0.1 for tests,
// the demo and the benchmark; plus a small bearer-token server for auth tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createSign, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bcrypt } from 'hash-wasm';
import { stringify } from 'yaml';
import { run } from './exec.js';

export interface RegistryOptions {
  /** Storage root (`storage.filesystem.rootdirectory`); a temp dir, removed on stop(), if omitted. */
  dataDir?: string;
  /** Basic auth; the bcrypt htpasswd file is generated (hash-wasm). */
  htpasswd?: { username: string; password: string };
  /** Bearer token auth (`auth.token`); see startTokenServer() for a matching issuer. */
  tokenAuth?: { realm: string; service: string; issuer: string; rootCertBundle: string };
  /** Read-only mode (`storage.maintenance.readonly`), e.g. to serve a saved layout. */
  readOnly?: boolean;
  /** Keep a temp dataDir after stop() (debugging). */
  keepDataDir?: boolean;
  /** Registry log level; default "error". */
  logLevel?: 'error' | 'warn' | 'info' | 'debug';
  /**
   * Serve HTTPS (`http.tls.certificate`/`key`, files in PEM); with `clientCa`, every client must
   * present a certificate signed by it (`http.tls.clientcas`), and `probeClient` is the pair the
   * start-up probe uses.
   */
  tls?: { cert: string; key: string; clientCa?: string; probeClient?: { cert: string; key: string } };
}

export interface RunningRegistry {
  host: string; // "127.0.0.1:PORT"
  url: string; // "http://127.0.0.1:PORT" (https:// with the tls option)
  dataDir: string;
  configPath: string;
  /** Everything the registry wrote to stdout/stderr so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * A second, read-only registry serving a saved registry layout, as a site would mount a bundle.
 * The layout is the caller's: stop() leaves it in place.
 */
export function serveLayout(bundle: string): Promise<RunningRegistry> {
  return startRegistry({ dataDir: bundle, readOnly: true, keepDataDir: true });
}

/** Registries serving saved layouts for one test file, all stopped together when it ends. */
export function layoutServers(): { serve(bundle: string): Promise<RunningRegistry>; stopAll(): Promise<void> } {
  const running: RunningRegistry[] = [];
  return {
    async serve(bundle) {
      const r = await serveLayout(bundle);
      running.push(r);
      return r;
    },
    async stopAll() {
      await Promise.all(running.map((r) => r.stop()));
    },
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1 (callers retry on EADDRINUSE races). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, host);
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** "user:$2y$..." line for distribution's htpasswd (bcrypt only). */
export async function htpasswdLine(username: string, password: string): Promise<string> {
  // Cost 5 keeps startup fast; the registry accepts any bcrypt cost.
  const hash = await bcrypt({ password, salt: randomBytes(16), costFactor: 5, outputType: 'encoded' });
  return `${username}:${hash}`;
}

// Registries still running when the process exits would leak ports and temp dirs.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RunningRegistry> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'ocisave-registry-')));
  await mkdir(dataDir, { recursive: true });
  const cfgDir = await mkdtemp(path.join(os.tmpdir(), 'ocisave-registry-cfg-'));
  let lastErr: unknown;
  // A port can be taken between freePort() and bind: retry a few times.
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await startOnce(opts, dataDir, cfgDir, ownDir);
    } catch (err) {
      lastErr = err;
      if (!/address already in use/i.test(String(err))) break;
    }
  }
  await rm(cfgDir, { recursive: true, force: true });
  if (ownDir && !opts.keepDataDir) await rm(dataDir, { recursive: true, force: true });
  throw lastErr;
}

async function startOnce(opts: RegistryOptions, dataDir: string, cfgDir: string, ownDir: boolean): Promise<RunningRegistry> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const url = `${opts.tls ? 'https' : 'http'}://${host}`;
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: opts.logLevel ?? 'error', accesslog: { disabled: true } },
    storage: {
      filesystem: { rootdirectory: dataDir },
      delete: { enabled: true },
      // Upload purging walks the tree on a timer; useless noise in short-lived tests.
      maintenance: {
        uploadpurging: { enabled: false },
        ...(opts.readOnly ? { readonly: { enabled: true } } : {}),
      },
    },
    http: { addr: host, secret: 'ocisave-test-secret', headers: { 'X-Content-Type-Options': ['nosniff'] } },
  };
  if (opts.tls) {
    (config.http as Record<string, unknown>).tls = {
      certificate: opts.tls.cert,
      key: opts.tls.key,
      ...(opts.tls.clientCa ? { clientcas: [opts.tls.clientCa] } : {}),
    };
  }
  if (opts.htpasswd) {
    const file = path.join(cfgDir, 'htpasswd');
    await writeFile(file, (await htpasswdLine(opts.htpasswd.username, opts.htpasswd.password)) + '\n');
    config.auth = { htpasswd: { realm: 'ocisave-test', path: file } };
  } else if (opts.tokenAuth) {
    const t = opts.tokenAuth;
    config.auth = { token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: t.rootCertBundle } };
  }
  const configPath = path.join(cfgDir, 'config.yml');
  await writeFile(configPath, stringify(config));

  installExitHook();
  const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  const collect = (b: Buffer) => {
    out += b.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19)); // bounded
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exited = false;
  const exitP = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      live.delete(child);
      resolve();
    }),
  );
  child.on('error', (err) => {
    out += `\nspawn error: ${err.message}`;
  });

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`docker-registry exited during startup on ${host}:\n${out}`);
    const status = await probe(`${url}/v2/`, opts.tls?.probeClient);
    if (status === 200 || status === 401) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exitP;
      throw new Error(`docker-registry did not answer GET /v2/ on ${host} within 15 s:\n${out}`);
    }
    await sleep(25);
  }

  let stopped: Promise<void> | undefined;
  return {
    host,
    url,
    dataDir,
    configPath,
    logs: () => out,
    stop() {
      stopped ??= (async () => {
        if (!exited) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exitP;
          clearTimeout(t);
        }
        await rm(cfgDir, { recursive: true, force: true });
        if (ownDir && !opts.keepDataDir) await rm(dataDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}

function probe(url: string, client?: { cert: string; key: string }): Promise<number> {
  return new Promise((resolve) => {
    // The start-up probe only asks whether the registry answers: its certificate is the test's own.
    const tls = url.startsWith('https:') ? { rejectUnauthorized: false, ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}) } : {};
    const req = (url.startsWith('https:') ? https : http).get(url, { agent: false, timeout: 1_000, ...tls }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Bearer token server: the docker token protocol in front of a registry
// started with `tokenAuth`. RS256 JWTs carry the signing cert in `x5c`, which
// distribution verifies against `rootcertbundle`.

export interface TokenServerOptions {
  /** user → password; requests without valid Basic credentials get anonymous scopes. */
  users?: Record<string, string>;
  /** Grant pull to anonymous callers (default false: anonymous gets no access). */
  anonymousPull?: boolean;
  /** `expires_in` seconds of issued tokens (default 300). */
  expiresIn?: number;
  /** Answer with `access_token` instead of `token` (both are valid per spec). */
  useAccessTokenField?: boolean;
  service?: string;
  issuer?: string;
}

export interface TokenRequestRecord {
  scope: string[];
  service: string | null;
  user: string | null; // authenticated user, or null for anonymous
  failedAuth: boolean;
}

export interface TokenServer {
  url: string;
  realm: string; // url + "/token"
  service: string;
  issuer: string;
  rootCertBundle: string; // PEM path to pass to startRegistry({tokenAuth})
  /** Registry option block, ready to spread: startRegistry({ tokenAuth: ts.tokenAuth }). */
  tokenAuth: { realm: string; service: string; issuer: string; rootCertBundle: string };
  requests(): TokenRequestRecord[];
  stop(): Promise<void>;
}

export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ocisave-token-'));
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  // A self-signed cert is its own root: distribution accepts the x5c chain.
  const r = await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '30', '-subj', '/CN=ocisave-test-token',
  ], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  const key: KeyObject = createPrivateKey(await readFile(keyPath));
  const certPem = await readFile(certPath, 'utf8');
  const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

  const service = opts.service ?? 'ocisave-test-registry';
  const issuer = opts.issuer ?? 'ocisave-test-issuer';
  const expiresIn = opts.expiresIn ?? 300;
  const log: TokenRequestRecord[] = [];

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    let user: string | null = null;
    let failedAuth = false;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [name, ...rest] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
      if (opts.users && name !== undefined && opts.users[name] === rest.join(':')) user = name;
      else failedAuth = true;
    }
    const scopes = u.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    log.push({ scope: scopes, service: u.searchParams.get('service'), user, failedAuth });
    if (failedAuth) {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }));
      return;
    }
    const access = scopes.flatMap((s) => {
      // scope = "repository:NAME:ACTIONS"; NAME may not contain ':' but the host part never appears here
      const m = /^([^:]+):(.+):([^:]+)$/.exec(s);
      if (!m) return [];
      const wanted = m[3]!.split(',');
      const granted = user ? wanted : opts.anonymousPull ? wanted.filter((a) => a === 'pull') : [];
      return granted.length ? [{ type: m[1]!, name: m[2]!, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 60,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const signingInput = `${b64(header)}.${b64(claims)}`;
    const sig = createSign('RSA-SHA256').update(signingInput).sign(key).toString('base64url');
    const token = `${signingInput}.${sig}`;
    const body = opts.useAccessTokenField
      ? { access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() }
      : { token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const realm = `${url}/token`;
  return {
    url,
    realm,
    service,
    issuer,
    rootCertBundle: certPath,
    tokenAuth: { realm, service, issuer, rootCertBundle: certPath },
    requests: () => log.slice(),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

