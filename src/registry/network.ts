// The network settings of a run as the library's callers give them (the CLI from its flags),
// turned into the plain TransportOptions every connection is built from. Kept apart from
// transport.ts so the download workers, which only build connections, never load the TOML parser.
import type { HostOptionsMap } from './host-options.js';
import { certsDRoots } from './certs.js';
import { proxySettingsFromEnv } from './proxy.js';
import { insecureHosts, type RegistriesConf } from './registries-conf.js';
import type { TransportOptions } from './transport.js';

export interface NetworkOptions {
  /** false: skip certificate verification everywhere, and allow plain HTTP (skopeo's --tls-verify=false). */
  tlsVerify?: boolean;
  /** One certs.d-style directory for every registry (skopeo's --cert-dir). */
  certDir?: string;
  /** Per registry host[:port] (skopeo-sync YAML's tls-verify/cert-dir); wins over registries.conf and the flags. */
  hostOptions?: HostOptionsMap;
  /** Parsed registries.conf: its `insecure` hosts, mirrors, locations and blocked prefixes. */
  registriesConf?: RegistriesConf;
  /** Environment for HTTP(S)_PROXY, NO_PROXY and OCISAVE_CERTS_D (default process.env). */
  env?: NodeJS.ProcessEnv;
}

/** NetworkOptions → TransportOptions; throws a one-line error for a malformed proxy variable. */
export function transportOptions(o: NetworkOptions): TransportOptions {
  const env = o.env ?? process.env;
  return {
    tlsVerify: o.tlsVerify,
    certDir: o.certDir,
    hostOptions: { ...insecureHosts(o.registriesConf), ...o.hostOptions },
    certsDRoots: certsDRoots(env),
    proxy: proxySettingsFromEnv(env),
  };
}
