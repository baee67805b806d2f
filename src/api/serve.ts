// serve(): a saved bundle read-only over the registry API, until close().
import type { BundleFormat } from '../bundle/types.js';
import { DEFAULT_LIMITS, type LimitEvent } from '../serve/limits.js';
import { SCHEMAS, versioned } from './schema.js';

export interface ServeRequest {
  /** Bundle directory or archive. */
  bundle: string;
  /** Default 127.0.0.1; port 0 (the default) picks a free one. */
  host?: string;
  port?: number;
  /** Connections open at once (default DEFAULT_LIMITS). */
  maxConnections?: number;
  /** Seconds without data before a connection is dropped; 0: never. */
  idleTimeout?: number;
  /** Seconds a client has to send a request's headers. */
  headerTimeout?: number;
  /** Hash each blob the first time it is served; refuse one that does not match. */
  verifyBlobs?: boolean;
  onRequest?: (r: { method: string; path: string; status: number; bytes: number }) => void;
  onLimit?: (e: LimitEvent) => void;
  onCorrupt?: (digest: string) => void;
  /** Problems found opening the bundle (served anyway, without what they name). */
  onWarning?: (message: string) => void;
}

export interface ServeInfo {
  url: string;
  host: string;
  port: number;
  format: BundleFormat;
  repositories: number;
  tags: number;
}

export type ServeResult = { schema: typeof SCHEMAS.serve } & ServeInfo;
/** The listening server; JSON.stringify of it is the serve result (close is left out). */
export type RunningBundleServer = ServeResult & { close(): Promise<void> };

const ms = (s: number | undefined, fallback: number) => (s === undefined ? fallback : s * 1000);

export async function serve(r: ServeRequest): Promise<RunningBundleServer> {
  const { openBundle } = await import('../bundle/index.js');
  const { serveBundle } = await import('../serve/server.js');
  const bundle = await openBundle(r.bundle);
  try {
    for (const p of bundle.problems) r.onWarning?.(p.message);
    const server = await serveBundle(bundle, {
      host: r.host ?? '127.0.0.1',
      port: r.port ?? 0,
      limits: {
        maxConnections: r.maxConnections ?? DEFAULT_LIMITS.maxConnections,
        idleTimeoutMs: ms(r.idleTimeout, DEFAULT_LIMITS.idleTimeoutMs),
        headerTimeoutMs: ms(r.headerTimeout, DEFAULT_LIMITS.headerTimeoutMs),
      },
      onLimit: r.onLimit,
      verifyBlobs: r.verifyBlobs,
      onCorrupt: r.onCorrupt,
      onRequest: r.onRequest,
    });
    const tags = [...bundle.repositories.values()].reduce((n, repo) => n + repo.tags.size, 0);
    const info = versioned(SCHEMAS.serve, { url: server.url, host: server.host, port: server.port, format: bundle.format, repositories: bundle.repositories.size, tags });
    const close = async () => {
      await server.close();
      await bundle.close();
    };
    return { ...info, close };
  } catch (err) {
    await bundle.close();
    throw err;
  }
}
