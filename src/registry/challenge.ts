// WWW-Authenticate parsing (RFC 7235 auth-params, as registries send them).

export interface Challenge {
  scheme: 'bearer' | 'basic' | string;
  params: Record<string, string>;
}

// RFC 7230 token characters; a scheme and a parameter name are both tokens.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const PARAM_RE = new RegExp(`(${TOKEN})\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^,\\s]*))`, 'y');
const SCHEME_RE = new RegExp(TOKEN, 'y');
const SEPARATORS_RE = /[\s,]*/y;

/**
 * Every challenge of the header(s): one header may hold several (`Basic realm="r", Bearer
 * realm="t",service="s"`), each scheme starting a new one; quoted values keep their commas.
 * A character that fits nowhere is skipped, so the scan always ends (one pass over the text).
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  for (const text of Array.isArray(header) ? header : header ? [header] : []) {
    let current: Challenge | undefined;
    let pos = 0;
    while (pos < text.length) {
      SEPARATORS_RE.lastIndex = pos;
      pos += SEPARATORS_RE.exec(text)![0].length;
      PARAM_RE.lastIndex = SCHEME_RE.lastIndex = pos;
      const param = current ? PARAM_RE.exec(text) : null;
      const scheme = param ? null : SCHEME_RE.exec(text);
      if (param) current!.params[param[1]!.toLowerCase()] = (param[2] ?? param[3] ?? '').replace(/\\(.)/g, '$1');
      else if (scheme) out.push((current = { scheme: scheme[0].toLowerCase(), params: {} }));
      pos = param ? PARAM_RE.lastIndex : scheme ? SCHEME_RE.lastIndex : pos + 1;
    }
  }
  return out;
}

/** The challenge to answer: Bearer before Basic (docker's order of auth handlers), else the first. */
export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const all = parseChallenges(header);
  return all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic') ?? all[0];
}
