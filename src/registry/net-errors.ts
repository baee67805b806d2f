// One line for a failed connection that says what fixes it: a certificate nobody trusts, a
// client certificate the registry wants, a proxy that is down or refuses us. Node's raw codes
// (UNABLE_TO_VERIFY_LEAF_SIGNATURE...) stay in parentheses for searching. Leaf module (imports only src/util).
import { InvalidInputError } from '../util/errors.js';

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

export function errorCode(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string }; message?: string };
  return e?.cause?.code ?? e?.code ?? e?.message ?? String(err);
}

/** A certificate-verification failure: plain HTTP is no answer to it (the server does speak TLS). */
export function isCertificateError(err: unknown): boolean {
  const code = errorCode(err);
  return UNTRUSTED.has(code) || EXPIRED.has(code) || code === 'ERR_TLS_CERT_ALTNAME_INVALID';
}

/** A certs.d or --cert-dir directory that cannot be used (thrown while building a connection). */
export class CertDirError extends InvalidInputError {
  override name = 'CertDirError';
}

/**
 * The server speaks TLS but refused us (certificate, client certificate) or our own TLS settings
 * are broken: plain HTTP is no answer to these, and their message is the one to report.
 */
export function isTlsRefusal(err: unknown): boolean {
  return isCertificateError(err) || wantsClientCert(err) || err instanceof CertDirError || (err as { cause?: unknown })?.cause instanceof CertDirError;
}

function wantsClientCert(err: unknown): boolean {
  const code = errorCode(err);
  const text = `${code} ${(err as Error)?.message ?? ''} ${(err as { cause?: Error })?.cause?.message ?? ''}`.toLowerCase();
  return /certificate.required|alert_bad_certificate|alert bad certificate|alert.handshake.failure|handshake failure/.test(text);
}

export interface ProxyInfo {
  /** Printable (no credentials). */
  url: string;
  /** The variable it came from (HTTPS_PROXY). */
  from: string;
}

/** The one-line explanation of a connection failure to `host`, or undefined when the raw code says enough. */
export function explainConnectError(err: unknown, host: string, proxy?: ProxyInfo): string | undefined {
  if (err instanceof CertDirError) return err.message;
  const code = errorCode(err);
  const dir = `/etc/containers/certs.d/${host}/`;
  if (UNTRUSTED.has(code)) {
    return `TLS to ${host} failed: its certificate is signed by an unknown authority (${code}); add the CA as a .crt file in ${dir} (or --cert-dir DIR), or skip verification with --tls-verify=false`;
  }
  if (EXPIRED.has(code)) return `TLS to ${host} failed: its certificate is expired or not yet valid (${code}); renew it, or skip verification with --tls-verify=false`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `TLS to ${host} failed: its certificate does not name ${host.replace(/:\d+$/, '')} (${code}); use the name the certificate holds, or skip verification with --tls-verify=false`;
  }
  if (wantsClientCert(err)) {
    return `TLS to ${host} failed: the registry wants a client certificate it trusts (${code}); put client.cert and client.key in ${dir} (or --cert-dir DIR)`;
  }
  if (/WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST/.test(code)) {
    return `TLS to ${host} failed: it does not speak TLS (${code}); for a plain-HTTP registry pass --plain-http, or mark it insecure in registries.conf`;
  }
  if (!proxy) return undefined;
  const message = `${(err as Error)?.message ?? ''}`;
  const m = /Proxy response \((\d+)\)|\((407)\)/.exec(message);
  const status = m?.[1] ?? m?.[2];
  // tinyproxy answers 401 to a CONNECT with wrong credentials, 407 to one without.
  if (status === '407' || status === '401') {
    return `proxy ${proxy.url} (${proxy.from}) asked for credentials or refused them (HTTP ${status}) for ${host}: give them in the URL, http://USER:PASSWORD@HOST:PORT`;
  }
  if (status) return `proxy ${proxy.url} (${proxy.from}) refused the tunnel to ${host} (HTTP ${status})`;
  return `cannot reach ${host} through proxy ${proxy.url} (${proxy.from}): ${code}; check the proxy, or add ${host.replace(/:\d+$/, '')} to NO_PROXY`;
}
