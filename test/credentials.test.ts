import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  describeCredential,
  lookupCredential,
  readAuthConfig,
  runCredentialHelper,
  type Credential,
} from '../src/registry/credentials.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

// A real credential helper, speaking docker's protocol: `get` with the server
// URL on stdin, JSON on stdout; errors on stdout with exit 1 like
// docker-credential-helpers do. It logs each request so tests can check what
// docker-compatible callers would have sent.
const HELPER = `#!/bin/sh
IFS= read -r url || true
echo "$1 $url" >> "$OCISAVE_HELPER_LOG"
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hub-s3cret"}' ;;
  helped.example.com) echo '{"ServerURL":"helped.example.com","Username":"helper-user","Secret":"helper-s3cret"}' ;;
  store.example.com) echo '{"ServerURL":"store.example.com","Username":"store-user","Secret":"store-s3cret"}' ;;
  tok.example.com) echo '{"ServerURL":"tok.example.com","Username":"<token>","Secret":"refresh-s3cret"}' ;;
  broken.example.com) echo 'boom: keychain locked' >&2; exit 3 ;;
  badjson.example.com) echo 'garbage json-s3cret' ;;
  slow.example.com) sleep 10 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;

let tmp: string;
let bin: string;
let log: string;
let caseNo = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'ocisave-creds-'));
  bin = join(tmp, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'docker-credential-ocisavetest'), HELPER);
  await chmod(join(bin, 'docker-credential-ocisavetest'), 0o755);
  log = join(tmp, 'helper.log');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A fresh HOME per test, so nothing from the machine's real config leaks in. */
let home: string;
let env: NodeJS.ProcessEnv;
beforeEach(async () => {
  home = join(tmp, `home${++caseNo}`);
  await mkdir(home, { recursive: true });
  await writeFile(log, '');
  env = { HOME: home, PATH: `${bin}:/usr/bin:/bin`, OCISAVE_HELPER_LOG: log };
});

async function dockerConfig(config: unknown): Promise<void> {
  await mkdir(join(home, '.docker'), { recursive: true });
  await writeFile(join(home, '.docker', 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
}

async function helperLog(): Promise<string[]> {
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean);
}

describe('docker config.json auths', () => {
  it('is anonymous when no config exists', async () => {
    expect(await lookupCredential('ghcr.io', { env })).toBeUndefined();
  });

  it('decodes auth (password may contain ":") and matches every key spelling', async () => {
    await dockerConfig({
      auths: {
        'plain.example.com': { auth: b64('u1:p:1') },
        'https://scheme.example.com': { auth: b64('u2:p2') },
        'http://insecure.example.com:5000': { auth: b64('u3:p3') },
        'https://v1.example.com/v1/': { auth: b64('u4:p4') },
        'https://index.docker.io/v1/': { auth: b64('hub:hubpass') },
      },
    });
    expect(await lookupCredential('plain.example.com', { env })).toEqual({ username: 'u1', password: 'p:1' });
    expect(await lookupCredential('scheme.example.com', { env })).toEqual({ username: 'u2', password: 'p2' });
    expect(await lookupCredential('insecure.example.com:5000', { env })).toEqual({ username: 'u3', password: 'p3' });
    expect(await lookupCredential('insecure.example.com', { env })).toBeUndefined(); // the port is part of the host
    expect(await lookupCredential('V1.Example.com', { env })).toEqual({ username: 'u4', password: 'p4' });
    for (const hub of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      expect(await lookupCredential(hub, { env })).toEqual({ username: 'hub', password: 'hubpass' });
    }
    expect(await lookupCredential('other.example.com', { env })).toBeUndefined();
  });

  it('prefers the exact key, reads username/password, identitytoken and registrytoken', async () => {
    await dockerConfig({
      auths: {
        'https://a.example.com': { auth: b64('loose:x') },
        'a.example.com': { username: 'exact', password: 'y' },
        'id.example.com': { username: 'u', identitytoken: 'id-tok' },
        'rt.example.com': { registrytoken: 'reg-tok' },
      },
    });
    expect(await lookupCredential('a.example.com', { env })).toEqual({ username: 'exact', password: 'y' });
    expect(await lookupCredential('id.example.com', { env })).toEqual({ identityToken: 'id-tok' });
    expect(await lookupCredential('rt.example.com', { env })).toEqual({ registryToken: 'reg-tok' });
  });

  it('honours DOCKER_CONFIG over ~/.docker', async () => {
    await dockerConfig({ auths: { 'r.example.com': { auth: b64('home:1') } } });
    const dir = join(home, 'elsewhere');
    await mkdir(dir);
    await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { 'r.example.com': { auth: b64('dc:2') } } }));
    expect(await lookupCredential('r.example.com', { env: { ...env, DOCKER_CONFIG: dir } })).toEqual({ username: 'dc', password: '2' });
  });
});

describe('errors never show secrets', () => {
  it('reports malformed JSON by file and position only', async () => {
    await dockerConfig('{"auths": {"x.example.com": {"auth": "c2VjcmV0LXBhc3N3b3Jk" oops}}}');
    const err = await lookupCredential('x.example.com', { env }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain(join(home, '.docker', 'config.json'));
    expect(msg).toMatch(/not valid JSON at line 1, column \d+/);
    expect(msg).not.toContain('c2VjcmV0');
    expect(msg).not.toContain('oops');
  });

  it('reports a bad auth field without its value', async () => {
    await dockerConfig({ auths: { 'x.example.com': { auth: b64('no-colon-secret') } } });
    const err = (await lookupCredential('x.example.com', { env }).catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/auths\["x\.example\.com"\] in .*config\.json: "auth" is not base64/);
    expect(err.message).not.toContain('no-colon-secret');
    expect(err.message).not.toContain(b64('no-colon-secret'));
  });

  it('reports wrong types by key', async () => {
    await dockerConfig({ auths: { 'x.example.com': { auth: 42 } } });
    await expect(lookupCredential('x.example.com', { env })).rejects.toThrow(/auths\["x\.example\.com"\]\.auth is not a string/);
    await dockerConfig('[]');
    await expect(lookupCredential('x.example.com', { env })).rejects.toThrow(/top level is not a JSON object/);
  });

  it('hides secrets when a credential is logged or serialised', async () => {
    await dockerConfig({ auths: { 'x.example.com': { auth: b64('alice:pa55word') } } });
    const cred = await lookupCredential('x.example.com', { env });
    expect(cred).toEqual({ username: 'alice', password: 'pa55word' });
    expect(JSON.stringify(cred)).not.toContain('pa55word');
    expect(inspect(cred)).not.toContain('pa55word');
    expect(`${describeCredential(cred)}`).toBe('username "alice" with password');
  });
});

describe('credential helpers (a real helper process)', () => {
  it('uses credHelpers[host] before auths[host]', async () => {
    await dockerConfig({
      auths: { 'helped.example.com': { auth: b64('file:pass') } },
      credHelpers: { 'helped.example.com': 'ocisavetest' },
    });
    expect(await lookupCredential('helped.example.com', { env })).toEqual({ username: 'helper-user', password: 'helper-s3cret' });
    expect(await helperLog()).toEqual(['get helped.example.com']);
  });

  it('asks helpers for Docker Hub with the legacy index URL', async () => {
    await dockerConfig({ credHelpers: { 'docker.io': 'ocisavetest' } });
    expect(await lookupCredential('registry-1.docker.io', { env })).toEqual({ username: 'hubuser', password: 'hub-s3cret' });
    expect(await helperLog()).toEqual(['get https://index.docker.io/v1/']);
  });

  it('turns Username <token> into an identity token', async () => {
    await dockerConfig({ credHelpers: { 'tok.example.com': 'ocisavetest' } });
    expect(await lookupCredential('tok.example.com', { env })).toEqual({ identityToken: 'refresh-s3cret' });
  });

  it('falls back to credsStore when auths has only docker’s empty placeholder', async () => {
    await dockerConfig({ auths: { 'store.example.com': {} }, credsStore: 'ocisavetest' });
    expect(await lookupCredential('store.example.com', { env })).toEqual({ username: 'store-user', password: 'store-s3cret' });
    // A usable auths entry wins over the store.
    await dockerConfig({ auths: { 'store.example.com': { auth: b64('f:p') } }, credsStore: 'ocisavetest' });
    expect(await lookupCredential('store.example.com', { env })).toEqual({ username: 'f', password: 'p' });
  });

  it('treats "credentials not found" as anonymous', async () => {
    await dockerConfig({ credsStore: 'ocisavetest' });
    expect(await lookupCredential('unknown.example.com', { env })).toBeUndefined();
    expect(await helperLog()).toEqual(['get unknown.example.com']);
  });

  it('reports a failing helper with its message, and bad output without quoting it', async () => {
    await dockerConfig({ credsStore: 'ocisavetest' });
    await expect(lookupCredential('broken.example.com', { env })).rejects.toThrow(
      /docker-credential-ocisavetest failed for broken\.example\.com \(exit status 3\).*credsStore in .*config\.json.*: boom: keychain locked/,
    );
    const err = (await lookupCredential('badjson.example.com', { env }).catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/returned output that is not JSON/);
    expect(err.message).not.toContain('json-s3cret');
  });

  it('reports a helper missing from PATH, and refuses path-like names', async () => {
    await dockerConfig({ credHelpers: { 'x.example.com': 'nosuchhelper' } });
    await expect(lookupCredential('x.example.com', { env })).rejects.toThrow(
      /docker-credential-nosuchhelper not found on PATH \(configured as credHelpers\["x\.example\.com"\] in /,
    );
    await expect(runCredentialHelper('../../bin/sh', 'x', { env })).rejects.toThrow(/invalid credential helper name/);
  });

  it('gives up on a helper that hangs', async () => {
    await expect(runCredentialHelper('ocisavetest', 'slow.example.com', { env, timeoutMs: 300 })).rejects.toThrow(
      /did not answer within 300 ms/,
    );
  });
});

describe('lookup order', () => {
  it('overrides, then REGISTRY_AUTH_FILE, then docker config', async () => {
    await dockerConfig({ auths: { 'r.example.com': { auth: b64('docker:1') }, 'only-docker.example.com': { auth: b64('d:2') } } });
    const authFile = join(home, 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { 'r.example.com': { auth: b64('podman:1') } } }));
    const e = { ...env, REGISTRY_AUTH_FILE: authFile };
    expect(await lookupCredential('r.example.com', { env: e })).toEqual({ username: 'podman', password: '1' });
    expect(await lookupCredential('only-docker.example.com', { env: e })).toEqual({ username: 'd', password: '2' });
    const overrides = new Map<string, Credential>([['https://r.example.com', { username: 'flag', password: 'stdin' }]]);
    expect(await lookupCredential('r.example.com', { env: e, overrides })).toEqual({ username: 'flag', password: 'stdin' });
    // A REGISTRY_AUTH_FILE that does not exist is not an error.
    expect(await lookupCredential('r.example.com', { env: { ...env, REGISTRY_AUTH_FILE: join(home, 'none.json') } })).toEqual({
      username: 'docker',
      password: '1',
    });
  });

  it('reads podman’s default auth.json and its namespaced keys', async () => {
    const runtime = join(home, 'run');
    await mkdir(join(runtime, 'containers'), { recursive: true });
    await writeFile(
      join(runtime, 'containers', 'auth.json'),
      JSON.stringify({
        auths: {
          'quay.io': { auth: b64('host-wide:1') },
          'quay.io/org': { auth: b64('org:2') },
          'quay.io/org/team': { auth: b64('team:3') },
        },
      }),
    );
    const e = { ...env, XDG_RUNTIME_DIR: runtime };
    expect(await lookupCredential('quay.io', { env: e })).toEqual({ username: 'host-wide', password: '1' });
    expect(await lookupCredential('quay.io', { env: e, repository: 'org/app' })).toEqual({ username: 'org', password: '2' });
    expect(await lookupCredential('quay.io', { env: e, repository: 'org/team/app' })).toEqual({ username: 'team', password: '3' });
    expect(await lookupCredential('quay.io', { env: e, repository: 'organic/app' })).toEqual({ username: 'host-wide', password: '1' });
  });

  it('readAuthConfig: missing and empty files are no config', async () => {
    expect(await readAuthConfig(join(home, 'missing.json'))).toBeUndefined();
    await writeFile(join(home, 'empty.json'), '');
    expect(await readAuthConfig(join(home, 'empty.json'))).toBeUndefined();
  });
});
