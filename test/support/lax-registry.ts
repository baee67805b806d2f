// A registry that accepts anything: blob uploads are committed under whatever digest the client
// names, without hashing them (no real registry does this on purpose, which is why it is ours).
// It records what was committed, what was cancelled and every byte it received, so a test can
// tell that a client never completed a damaged upload and never sent bytes it must not send.
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LaxRegistry {
  host: string;
  /** `repository@digest` → bytes of blobs the client completed with PUT ?digest=. */
  blobs: Map<string, Buffer>;
  /** repository:reference → manifest bytes the client PUT. */
  manifests: Map<string, Buffer>;
  /** Upload sessions the client cancelled with DELETE. */
  cancelled: string[];
  /** Every request body received, concatenated: to assert some bytes were never sent. */
  received(): Buffer;
  stop(): Promise<void>;
}

export async function startLaxRegistry(): Promise<LaxRegistry> {
  const uploads = new Map<string, Buffer[]>();
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, Buffer>();
  const cancelled: string[] = [];
  const all: Buffer[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    all.push(body);
    const url = new URL(req.url ?? '/', 'http://lax.invalid');
    const path = url.pathname;
    const send = (status: number, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-length': '0', ...headers });
      res.end();
    };
    if (path === '/v2/' || path === '/v2') return send(200);
    let m = /^\/v2\/(.+)\/blobs\/uploads\/?$/.exec(path);
    if (m && req.method === 'POST') {
      const id = randomUUID();
      uploads.set(id, []);
      return send(202, { location: `/v2/${m[1]}/blobs/uploads/${id}`, range: '0-0' });
    }
    m = /^\/v2\/(.+)\/blobs\/uploads\/([\w-]+)$/.exec(path);
    if (m) {
      const parts = uploads.get(m[2]!);
      if (!parts) return send(404);
      const held = parts.reduce((n, p) => n + p.length, 0);
      if (req.method === 'PATCH') {
        parts.push(body);
        return send(202, { location: path, range: `0-${held + body.length - 1}` });
      }
      if (req.method === 'GET') return send(204, held ? { range: `0-${held - 1}` } : {});
      if (req.method === 'DELETE') {
        uploads.delete(m[2]!);
        cancelled.push(m[2]!);
        return send(204);
      }
      if (req.method === 'PUT') {
        const digest = url.searchParams.get('digest') ?? '';
        blobs.set(`${m[1]}@${digest}`, Buffer.concat([...parts, body]));
        uploads.delete(m[2]!);
        return send(201, { 'docker-content-digest': digest, location: `/v2/${m[1]}/blobs/${digest}` });
      }
    }
    m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path);
    if (m && (req.method === 'HEAD' || req.method === 'GET')) {
      const b = blobs.get(`${m[1]}@${m[2]}`);
      if (!b) return send(404);
      res.writeHead(200, { 'content-length': String(b.length), 'docker-content-digest': m[2]! });
      return res.end(req.method === 'GET' ? b : undefined);
    }
    m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (m && req.method === 'PUT') {
      manifests.set(`${m[1]}:${m[2]}`, body);
      return send(201);
    }
    if (m && (req.method === 'HEAD' || req.method === 'GET')) {
      const b = manifests.get(`${m[1]}:${m[2]}`);
      if (!b) return send(404);
      res.writeHead(200, { 'content-length': String(b.length), 'content-type': req.headers['content-type'] ?? 'application/vnd.oci.image.manifest.v1+json' });
      return res.end(req.method === 'GET' ? b : undefined);
    }
    send(404);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    blobs,
    manifests,
    cancelled,
    received: () => Buffer.concat(all),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
