// `ocisave serve BUNDLE --addr 127.0.0.1:5000`: serve a saved bundle read-only over the registry
// API until interrupted. Prints the address it listens on (port 0 picks a free one).
import { Command, InvalidArgumentError } from 'commander';
import { isLoopbackHost } from '../registry/hosts.js';
import { DEFAULT_LIMITS, type LimitEvent } from '../serve/limits.js';
import { positiveInt } from './options.js';

interface ServeFlags {
  addr: string;
  maxConnections: number;
  idleTimeout: number;
  headerTimeout: number;
  verifyBlobs?: boolean;
  accessLog?: boolean;
  json?: boolean;
}

/** "HOST:PORT", "[::1]:PORT" or ":PORT" (every interface). */
export function parseAddr(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError('HOST:PORT, [IPv6]:PORT or :PORT');
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Whole seconds from `min` to a day: node's timers take at most 2^31-1 ms (24.8 days) and fire at once beyond. */
function seconds(min: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > 86_400) throw new InvalidArgumentError(`must be whole seconds from ${min} to 86400 (a day)`);
    return n;
  };
}

/** Every limit event with --access-log; otherwise the first refusal only, so a flood cannot flood stderr. */
function limitLog(accessLog: boolean | undefined, max: number): (e: LimitEvent) => void {
  let warned = false;
  return (e) => {
    if (accessLog) process.stderr.write(`${e.kind === 'refused' ? `refused ${e.remote}: ${max} connections open` : `dropped ${e.remote}: idle`}\n`);
    else if (e.kind === 'refused' && !warned) {
      warned = true;
      process.stderr.write(`warning: ${max} connections open (--max-connections): refusing more; --access-log shows each\n`);
    }
  };
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('serve a saved bundle (registry layout, OCI layout/archive, docker-save tar) read-only over the registry API')
    .argument('<bundle>', 'bundle directory or archive')
    .option('--addr <host:port>', 'address to listen on (port 0: any free port)', '127.0.0.1:5000')
    .option('--max-connections <n>', 'connections open at once; more are closed when accepted', positiveInt, DEFAULT_LIMITS.maxConnections)
    .option('--idle-timeout <seconds>', 'drop a connection that moves no data for this long (0: never)', seconds(0), DEFAULT_LIMITS.idleTimeoutMs / 1000)
    .option('--header-timeout <seconds>', 'time a client has to send a request\'s headers', seconds(1), DEFAULT_LIMITS.headerTimeoutMs / 1000)
    .option('--verify-blobs', 'hash each blob the first time it is served; refuse one that does not match its digest')
    .option('--access-log', 'one line per request (and per refused or idle connection) on stderr')
    .option('--json', 'print the listening address as JSON')
    .action(async (path: string, flags: ServeFlags) => {
      const { serve } = await import('../api/serve.js');
      const { host, port } = parseAddr(flags.addr);
      const server = await serve({
        bundle: path,
        host,
        port,
        maxConnections: flags.maxConnections,
        idleTimeout: flags.idleTimeout,
        headerTimeout: flags.headerTimeout,
        onLimit: limitLog(flags.accessLog, flags.maxConnections),
        verifyBlobs: flags.verifyBlobs,
        onCorrupt: (digest) => process.stderr.write(`error: ${digest} in ${path} does not match its digest: refused from now on (run ocisave verify ${path})\n`),
        onRequest: flags.accessLog ? (r) => process.stderr.write(`${r.method} ${r.path} ${r.status} ${r.bytes}\n`) : undefined,
        onWarning: (message) => process.stderr.write(`warning: ${message}\n`),
      });
      if (!isLoopbackHost(host)) {
        process.stderr.write(`warning: serving on ${server.host} without TLS or authentication: anyone who can reach it can pull\n`);
      }
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(server)}\n`
          : `serving ${server.format} bundle ${path} (${server.repositories} repositories, ${server.tags} tags) on ${server.url}\n`,
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
    });
}
