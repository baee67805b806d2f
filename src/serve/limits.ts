// What keeps `serve` bounded whatever its clients do: how many connections it holds, how long a
// request's headers may take, and how long a connection may make no progress. The memory each
// connection may hold is the blob chunk size (server.ts); these limits bound how many such
// connections there are and for how long.
import type http from 'node:http';

export interface ServeLimits {
  /** Connections open at once; a further one is closed as soon as it is accepted. */
  maxConnections: number;
  /** A connection that moves no byte either way for this long is dropped; 0: never. */
  idleTimeoutMs: number;
  /** Time a client has to send a whole request line and headers. */
  headerTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServeLimits = {
  // A stalled connection holds ~2 chunks, about 155 KiB with its sockets' state (measured with
  // 600): 1024 of them add ~160 MB to the ~95 MB of a server that has sent a blob, under 300 MB.
  maxConnections: 1024,
  // nginx's send_timeout: 60 s between two successful writes to a client.
  idleTimeoutMs: 60_000,
  // A request line and headers are a few hundred bytes; 30 s is ample on the slowest link and
  // half node's default (60 s), which a slowloris client holds a connection for.
  headerTimeoutMs: 30_000,
};

export interface LimitEvent {
  kind: 'refused' | 'idle';
  remote: string;
}

/** Options that node takes only when the server is created. */
export function limitServerOptions(limits: ServeLimits): http.ServerOptions {
  return {
    headersTimeout: limits.headerTimeoutMs,
    // A read-only registry takes no request bodies (writes get 405), so a whole request gets as
    // long as its headers (node wants requestTimeout >= headersTimeout).
    requestTimeout: limits.headerTimeoutMs,
    // Node checks those two every 30 s by default, so a 1 s timeout fired up to 30 s late; check
    // four times per timeout, at most once a second (a scan of the open connections).
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(limits.headerTimeoutMs / 4))),
  };
}

/** Connection cap and the idle rule between requests; `idleDuringResponse` covers a response in flight. */
export function applyLimits(server: http.Server, limits: ServeLimits, onEvent?: (e: LimitEvent) => void): void {
  // node closes the accepted socket at once beyond this ('drop'): nothing is read or allocated for it.
  server.maxConnections = limits.maxConnections;
  server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => onEvent?.({ kind: 'refused', remote: `${d?.remoteAddress}:${d?.remotePort}` }));
  // Before the first request and between requests node destroys a socket silent for this long.
  server.timeout = limits.idleTimeoutMs;
  server.keepAliveTimeout = limits.idleTimeoutMs ? Math.min(30_000, limits.idleTimeoutMs) : 30_000;
}

/**
 * The idle rule while a response is sent: drop the connection when no write completes for the idle
 * timeout. A slow reader that still moves is not idle: node re-arms a socket's timer whenever a
 * write is handed to the kernel or completes, and blobs go out in chunks (64 KiB, server.ts), so a
 * client is dropped only when it takes in less than one chunk in the whole timeout: about 1 KiB/s
 * at 60 s, as curl's `--speed-limit 1092 --speed-time 60` would put it. A fixed rate over a window
 * would need a timer per connection and would drop a client that stalls briefly after a fast start;
 * "no progress for T" is nginx's send_timeout, which registry clients already live with.
 */
export function idleDuringResponse(res: http.ServerResponse, limits: ServeLimits, onEvent?: (e: LimitEvent) => void): void {
  if (!limits.idleTimeoutMs) return;
  // node disarms the timer when a keep-alive connection starts its next request: arm it again.
  res.setTimeout(limits.idleTimeoutMs, () => {
    const s = res.socket;
    if (!s) return;
    onEvent?.({ kind: 'idle', remote: `${s.remoteAddress}:${s.remotePort}` });
    // A reset, not a close: a closed socket would keep its unsent bytes (up to the 4 MiB of
    // tcp_wmem) in the kernel as an orphan until the stalled client reads them or TCP gives up.
    s.resetAndDestroy();
  });
}
