// HTTP_PROXY / HTTPS_PROXY / NO_PROXY as Go's golang.org/x/net/http/httpproxy reads them, so
// ocisave picks the same proxy as docker, skopeo and crane for the same environment:
// - the upper-case name wins over the lower-case one; https:// URLs use HTTPS_PROXY, http:// ones HTTP_PROXY;
// - a proxy written without a scheme is http://; socks5 is refused (not supported here);
// - "localhost" and loopback IPs (127.0.0.0/8, ::1) never use a proxy, whatever NO_PROXY says;
// - NO_PROXY: comma-separated; `*` alone bypasses everything; an IP or CIDR matches IPs;
//   `example.com` matches it and its subdomains, `.example.com` and `*.example.com` subdomains only;
//   `host:port` only that port (a URL without a port has 443 or 80).
// Leaf module: imports nothing of ours.
import { BlockList, isIP } from 'node:net';
import { InvalidInputError } from '../util/errors.js';

/** What the environment says, serialisable (it travels to the download workers). */
export interface ProxySettings {
  httpProxy?: string;
  httpsProxy?: string;
  noProxy?: string;
  /** Which variable each came from, for messages ("HTTPS_PROXY"). */
  httpFrom?: string;
  httpsFrom?: string;
}

function envAny(env: NodeJS.ProcessEnv, names: string[]): [string, string] | undefined {
  for (const n of names) if (env[n]) return [env[n]!, n];
  return undefined;
}

/** A proxy URL checked and completed; the error never repeats the value (it may hold a password). */
export function parseProxyUrl(value: string, from: string): string {
  const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidInputError(`${from} is not a valid proxy URL (expected http://[user:password@]host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidInputError(`${from}: proxy scheme ${url.protocol.replace(':', '')} is not supported (use http:// or https://)`);
  }
  return url.href;
}

export function proxySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ProxySettings {
  const http = envAny(env, ['HTTP_PROXY', 'http_proxy']);
  const https = envAny(env, ['HTTPS_PROXY', 'https_proxy']);
  const no = envAny(env, ['NO_PROXY', 'no_proxy']);
  return {
    httpProxy: http && parseProxyUrl(http[0], http[1]),
    httpFrom: http?.[1],
    httpsProxy: https && parseProxyUrl(https[0], https[1]),
    httpsFrom: https?.[1],
    noProxy: no?.[0],
  };
}

/** A proxy URL as it may be printed: scheme, host and port, never the credentials. */
export function redactProxy(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

interface NoProxyRules {
  all: boolean;
  ips: BlockList;
  ipPorts: { ip: string; port: string }[];
  domains: { suffix: string; matchHost: boolean; port: string }[];
}

const parsedRules = new Map<string, NoProxyRules>();

function splitHostPort(entry: string): [string, string] {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (v6) return [v6[1]!, v6[2] ?? ''];
  const m = /^([^:]+):(\d+)$/.exec(entry);
  return m ? [m[1]!, m[2]!] : [entry, ''];
}

function parseNoProxy(text: string): NoProxyRules {
  const rules: NoProxyRules = { all: false, ips: new BlockList(), ipPorts: [], domains: [] };
  for (const raw of text.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return { ...rules, all: true };
    const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
    if (cidr && isIP(cidr[1]!)) {
      rules.ips.addSubnet(cidr[1]!, Number(cidr[2]), isIP(cidr[1]!) === 6 ? 'ipv6' : 'ipv4');
      continue;
    }
    const [host, port] = splitHostPort(entry);
    if (!host) continue;
    if (isIP(host)) {
      rules.ipPorts.push({ ip: host, port });
      continue;
    }
    let suffix = host.startsWith('*.') ? host.slice(1) : host;
    const matchHost = !suffix.startsWith('.');
    if (matchHost) suffix = `.${suffix}`;
    rules.domains.push({ suffix, matchHost, port });
  }
  return rules;
}

function isLoopbackIp(ip: string): boolean {
  return isIP(ip) === 4 ? ip.startsWith('127.') : ip === '::1' || /^(0{0,4}:){7}0{0,3}1$/.test(ip);
}

/** Whether a request to `url` bypasses the proxy (Go's useProxy, negated). */
export function bypassesProxy(url: URL, noProxy: string | undefined): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  if (host === 'localhost') return true;
  const ipKind = isIP(host);
  if (ipKind && isLoopbackIp(host)) return true;
  if (!noProxy) return false;
  let rules = parsedRules.get(noProxy);
  if (!rules) parsedRules.set(noProxy, (rules = parseNoProxy(noProxy)));
  if (rules.all) return true;
  if (ipKind) {
    if (rules.ips.check(host, ipKind === 6 ? 'ipv6' : 'ipv4')) return true;
    return rules.ipPorts.some((r) => r.ip === host && (!r.port || r.port === port));
  }
  return rules.domains.some((d) => (host.endsWith(d.suffix) || (d.matchHost && host === d.suffix.slice(1))) && (!d.port || d.port === port));
}

/** The proxy for `url`, or undefined to go direct. */
export function proxyFor(url: URL, s: ProxySettings): { url: string; from: string } | undefined {
  const proxy = url.protocol === 'https:' ? s.httpsProxy : s.httpProxy;
  if (!proxy || bypassesProxy(url, s.noProxy)) return undefined;
  return { url: proxy, from: (url.protocol === 'https:' ? s.httpsFrom : s.httpFrom) ?? 'proxy' };
}
