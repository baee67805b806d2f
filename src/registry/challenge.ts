// WWW-Authenticate parsing (RFC 7235 auth-params, as registries send them).

export interface Challenge {
  scheme: 'bearer' | 'basic' | string;
  params: Record<string, string>;
}

export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const text = Array.isArray(header) ? header[0] : header;
  if (!text) return undefined;
  const m = /^\s*(\w+)\s*(.*)$/s.exec(text);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!))) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}
