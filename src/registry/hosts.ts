// Which registry hosts are spoken to over plain HTTP by default: loopback only, like docker's
// built-in insecure range for 127.0.0.0/8.

export function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

export function isLoopbackHost(host: string): boolean {
  const name = hostname(host);
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}
