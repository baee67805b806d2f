// A real forward proxy from Debian (tinyproxy) on 127.0.0.1 and a free port, started by the test:
// CONNECT tunnels and plain forwarding, optionally with Basic auth, its log kept for assertions.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './registry.js';

export interface ForwardProxy {
  /** http://127.0.0.1:PORT (no credentials). */
  url: string;
  port: number;
  /** tinyproxy's log so far (LogLevel Info: one "Request ... CONNECT host:port" line per tunnel). */
  log(): string;
  /** The CONNECT request lines seen so far ("CONNECT registry.ocisave.test:PORT"). */
  connects(): string[];
  stop(): Promise<void>;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function startForwardProxy(opts: { basicAuth?: { username: string; password: string } } = {}): Promise<ForwardProxy> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ocisave-tinyproxy-'));
  const port = await freePort();
  // No ConnectPort line: CONNECT is allowed to every port (tinyproxy(5)); registries use free ports.
  const conf = [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 60', 'LogLevel Info', 'MaxClients 64', 'Allow 127.0.0.1'];
  if (opts.basicAuth) conf.push(`BasicAuth ${opts.basicAuth.username} ${opts.basicAuth.password}`);
  const confPath = path.join(dir, 'tinyproxy.conf');
  await writeFile(confPath, conf.join('\n') + '\n');
  // -d: foreground, log on stderr.
  const child = spawn('tinyproxy', ['-d', '-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const collect = (b: Buffer) => {
    out += b.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exited = false;
  const exit = once(child, 'exit').then(() => {
    exited = true;
  });
  const deadline = Date.now() + 15_000;
  while (!(await accepts(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      await exit;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`tinyproxy did not start on port ${port}:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log: () => out,
    connects: () => [...out.matchAll(/Request \(file descriptor \d+\): (CONNECT \S+)/g)].map((m) => m[1]!),
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exit;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
