// `--to HOST[:PORT][/prefix]`: where push sends a bundle. A scheme may be given: http:// forces
// plain HTTP (loopback hosts get it anyway), https:// is the default elsewhere.
import { UsageError } from '../util/errors.js';

const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_RE = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?$/;

export interface PushTarget {
  /** Registry host as references name it ("127.0.0.1:5000", "docker.io"). */
  registry: string;
  /** Prepended to every repository name, without slashes at either end ("" for none). */
  prefix: string;
  /** The user asked for http:// explicitly. */
  plainHttp: boolean;
}

export function parseTarget(input: string): PushTarget {
  let rest = input.trim();
  let plainHttp = false;
  const scheme = /^(https?):\/\//i.exec(rest);
  if (scheme) {
    plainHttp = scheme[1]!.toLowerCase() === 'http';
    rest = rest.slice(scheme[0].length);
  }
  rest = rest.replace(/\/+$/, '');
  const slash = rest.indexOf('/');
  const registry = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1);
  if (!registry || !HOST_RE.test(registry)) throw new UsageError(`--to "${input}": "${registry}" is not a registry host (HOST[:PORT][/prefix])`);
  if (prefix && prefix.split('/').some((c) => !COMPONENT_RE.test(c))) {
    throw new UsageError(`--to "${input}": prefix "${prefix}" must be lowercase repository components separated by "/"`);
  }
  return { registry: registry === 'index.docker.io' || registry === 'registry-1.docker.io' ? 'docker.io' : registry, prefix, plainHttp };
}

/** The repository a bundle repository lands in. */
export function targetRepository(target: PushTarget, repository: string): string {
  return target.prefix ? `${target.prefix}/${repository}` : repository;
}
