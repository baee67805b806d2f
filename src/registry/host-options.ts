// Per-registry connection settings, whichever source they come from: command-line flags,
// registries.conf, certs.d directories, or a skopeo-sync YAML file. Keyed by registry host[:port]
// as references name it (docker.io, quay.io, 127.0.0.1:5000).

export interface HostOptions {
  /** false: do not verify the server's certificate (skopeo's --tls-verify=false). HTTPS is still tried first. */
  tlsVerify?: boolean;
  /** A certs.d-style directory: `*.crt` CA certificates, `*.cert` + `*.key` client pairs. */
  certDir?: string;
}

export type HostOptionsMap = Record<string, HostOptions>;
