// The parts of undici ocisave uses, loaded without undici's index. The index also loads its fetch,
// cache and cookie modules, and their first look at globalThis.Headers makes node 20 load its own
// bundled undici, which compiles llhttp's WebAssembly in the background: ~80 ms of start-up for each
// thread, and a worker thread terminated during that compile crashes the whole process (SIGSEGV in
// V8's AsyncCompileJob, seen in CI when a save needing no download closed its pool at once).
import { createRequire } from 'node:module';
import type * as undici from 'undici';

// Paths inside undici's package: safe because package.json pins undici exactly (7.30.2, no range),
// so an npm install from the registry gets these very files; a bump must re-run the tests (a moved
// path fails every command at start-up, and every test with it).
const load = createRequire(import.meta.url);

export const Agent: typeof undici.Agent = load('undici/lib/dispatcher/agent.js');
export const ProxyAgent: typeof undici.ProxyAgent = load('undici/lib/dispatcher/proxy-agent.js');
/** The base class every undici dispatcher extends (transport.ts routes requests with one). */
export const DispatcherClass: typeof undici.Dispatcher = load('undici/lib/dispatcher/dispatcher.js');
// ProxyAgent opens its CONNECT tunnel with dispatcher.connect(), which undici's index adds to
// every dispatcher (Object.assign(Dispatcher.prototype, api)); without the index, add that one.
const proto = DispatcherClass.prototype as unknown as Record<string, unknown>;
proto.connect ??= load('undici/lib/api/api-connect.js');

type RequestOptions = Omit<undici.Dispatcher.RequestOptions, 'origin' | 'path'> & { dispatcher: undici.Dispatcher };
const dispatchRequest: (this: undici.Dispatcher, opts: undici.Dispatcher.RequestOptions) => Promise<undici.Dispatcher.ResponseData> = load(
  'undici/lib/api/api-request.js',
);

/** undici's request(url, opts), always through the given dispatcher. */
export function request(url: string | URL, { dispatcher, ...opts }: RequestOptions): Promise<undici.Dispatcher.ResponseData> {
  const u = typeof url === 'string' ? new URL(url) : url;
  return dispatchRequest.call(dispatcher, { ...opts, origin: u.origin, path: u.pathname + u.search });
}
