// Which TLS settings a host gets: its own entry over the run-wide flags, certs.d found by
// HOST[:PORT] (Docker Hub under either name), --cert-dir instead of the lookup.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostOptionsOf, tlsFor } from '../src/registry/transport.js';
import { transportOptions } from '../src/registry/network.js';
import { parseRegistriesConf } from '../src/registry/registries-conf.js';

let root: string;
const CA = '-----BEGIN CERTIFICATE-----\nfake ca for the lookup test\n-----END CERTIFICATE-----\n';

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ocisave-transport-'));
  for (const [dir, files] of Object.entries({
    'certs.d/reg.example:5000': { 'ca.crt': CA, 'client.cert': 'CERT', 'client.key': 'KEY' },
    'certs.d/docker.io': { 'hub.crt': CA },
    'certs.d/broken.example': { 'client.cert': 'CERT' },
    'own': { 'a.crt': CA },
  })) {
    await mkdir(join(root, dir), { recursive: true });
    for (const [name, text] of Object.entries(files)) await writeFile(join(root, dir, name), text);
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('TLS settings per host', () => {
  it('a host entry wins over the run-wide flags', () => {
    const opts = { tlsVerify: false, certDir: '/run-wide', hostOptions: { 'strict.example': { tlsVerify: true }, 'docker.io': { certDir: '/hub' } } };
    expect(hostOptionsOf(opts, 'strict.example')).toEqual({ tlsVerify: true, certDir: '/run-wide' });
    expect(hostOptionsOf(opts, 'other.example')).toEqual({ tlsVerify: false, certDir: '/run-wide' });
    expect(hostOptionsOf(opts, 'registry-1.docker.io')).toEqual({ tlsVerify: false, certDir: '/hub' });
  });

  it('reads HOST:PORT from the certs.d roots: CAs added to the system roots, the client pair', () => {
    const t = tlsFor({ certsDRoots: [join(root, 'nowhere'), join(root, 'certs.d')] }, 'reg.example:5000');
    expect(t.ca).toEqual([...rootCertificates, CA]);
    expect([t.cert, t.key, t.rejectUnauthorized]).toEqual(['CERT', 'KEY', true]);
    expect(tlsFor({ certsDRoots: [join(root, 'certs.d')] }, 'reg.example').ca).toBeUndefined();
    expect(tlsFor({ certsDRoots: [join(root, 'certs.d')] }, 'registry-1.docker.io').ca).toEqual([...rootCertificates, CA]);
  });

  it('--cert-dir replaces the lookup; --tls-verify=false turns verification off', () => {
    const t = tlsFor({ certsDRoots: [join(root, 'certs.d')], certDir: join(root, 'own'), tlsVerify: false }, 'reg.example:5000');
    expect(t.ca).toEqual([...rootCertificates, CA]);
    expect(t.cert).toBeUndefined();
    expect(t.rejectUnauthorized).toBe(false);
  });

  it('a client certificate without its key is an error naming both files', () => {
    expect(() => tlsFor({ certsDRoots: [join(root, 'certs.d')] }, 'broken.example')).toThrow(`certificate directory ${join(root, 'certs.d/broken.example')}: client certificate client.cert has no client.key`);
  });

  it('registries.conf insecure hosts and skopeo-sync host options meet in one map, the latter winning', () => {
    const conf = parseRegistriesConf('[[registry]]\nlocation = "a.example"\ninsecure = true\n[[registry]]\nlocation = "b.example"\ninsecure = true\n', 'f');
    const t = transportOptions({ registriesConf: conf, hostOptions: { 'b.example': { tlsVerify: true } }, env: { OCISAVE_CERTS_D: '/x:/y', HTTPS_PROXY: 'p:3128' } });
    expect(t.hostOptions).toEqual({ 'a.example': { tlsVerify: false }, 'b.example': { tlsVerify: true } });
    expect(t.certsDRoots).toEqual(['/x', '/y']);
    expect(t.proxy?.httpsProxy).toBe('http://p:3128/');
  });
});
