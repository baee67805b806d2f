// A private certificate authority made with the real openssl, as a site would make one: a CA,
// a server certificate for the names tests use, and client certificates for mTLS.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { runOk } from './exec.js';

export interface TestCa {
  dir: string;
  /** CA certificate (PEM) and its key. */
  cert: string;
  key: string;
  /** A server certificate for `names` (DNS names and IPs), signed by the CA. */
  server(names: string[], name?: string): Promise<{ cert: string; key: string }>;
  /** A client certificate, signed by the CA. */
  client(cn: string): Promise<{ cert: string; key: string }>;
}

const subjectAltName = (names: string[]) => names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');

export async function makeCa(dir: string, cn = 'ocisave test CA'): Promise<TestCa> {
  await mkdir(dir, { recursive: true });
  const cert = join(dir, 'ca.pem');
  const key = join(dir, 'ca.key');
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-keyout', key, '-out', cert,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  let serial = 0;
  const issue = async (name: string, subject: string, ext: string[]) => {
    const k = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const c = join(dir, `${name}.pem`);
    await runOk('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', subject, '-keyout', k, '-out', csr, ...ext.flatMap((e) => ['-addext', e])]);
    await runOk('openssl', ['x509', '-req', '-in', csr, '-CA', cert, '-CAkey', key, '-set_serial', String(++serial + 1000), '-days', '2', '-copy_extensions', 'copy', '-out', c]);
    return { cert: c, key: k };
  };
  return {
    dir,
    cert,
    key,
    server: (names, name = 'server') => issue(name, `/CN=${names[0]}`, [`subjectAltName=${subjectAltName(names)}`, 'extendedKeyUsage=serverAuth']),
    client: (cn) => issue(`client-${cn}`, `/CN=${cn}`, ['extendedKeyUsage=clientAuth']),
  };
}
