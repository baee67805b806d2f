// Which hosts are loopback: spoken to over plain HTTP by default (docker's built-in insecure range
// for 127.0.0.0/8), and trusted with credentials in clear. A leaf module: it imports nothing of ours.

export function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

/**
 * The host as the WHATWG URL parser (and so undici) will connect to it: `127.1`, `0x7f.1` and
 * `2130706433` all become `127.0.0.1`; `[0:0:0:0:0:0:0:1]` becomes `[::1]`; `[::ffff:127.0.0.1]`
 * becomes `[::ffff:7f00:1]`. Undefined when it does not parse as a host.
 */
function canonicalHostname(host: string): string | undefined {
  const bare = hostname(host.trim());
  // A bare IPv6 address (no brackets, several colons) is bracketed for the parser.
  const forUrl = bare.includes(':') ? `[${bare}]` : bare;
  try {
    return new URL(`http://${forUrl}/`).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

/** 127.0.0.0/8 and ::1 in every spelling (IPv4-mapped ::ffff:127.x included), and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const name = canonicalHostname(host);
  if (!name) return false;
  if (name === 'localhost') return true;
  if (/^127\.\d+\.\d+\.\d+$/.test(name)) return true;
  if (name === '[::1]') return true;
  // IPv4-mapped IPv6 (::ffff:0:0/96): the parser writes the IPv4 part as two hex groups, 7fxx:xxxx.
  return /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(name);
}

/**
 * Whether credentials may go to `url` for a registry reached at `registryHost`: always over HTTPS;
 * over plain HTTP only to a loopback host, or to the registry's own host name when the user asked
 * plain HTTP for it (`plainHttp`). A token realm on another host over http:// never qualifies.
 */
export function clearTextAllowed(url: URL, registryHost: string, plainHttp: boolean): boolean {
  if (url.protocol === 'https:' || isLoopbackHost(url.host)) return true;
  return plainHttp && url.hostname === canonicalHostname(registryHost);
}
