// V8 flags for a process that downloads: set once, before the first connection and before the
// download pool starts. V8's flags are process-wide, but a heap is sized when its isolate is
// created: the old-space flag below reaches the download threads only, never the main thread.
import { setFlagsFromString } from 'node:v8';
import type { HasherKind } from '../hash/hasher.js';

/**
 * The download threads' old space starts at this size. Each 64 KiB socket read is a new
 * ArrayBuffer, and a download thread's small heap (V8 held its limit at 24-32 MB, 8 MB live) ran
 * a full mark-compact every 40-100 ms through a transfer: 72 in a cold save of the large fleet at
 * 32 MB, 5 at 64 MB, ~1 CPU-s of its ~12; 128 MB saved little more for more peak RSS
 * (bench/README.md, round 6). The main thread's heap is sized by node at start, untouched.
 */
const DOWNLOAD_OLD_SPACE_MB = 64;

/**
 * undici parses HTTP with llhttp compiled to WebAssembly, once per thread. V8 compiles it with
 * Liftoff, then again with TurboFan on background threads: ~0.4 CPU-s of a warm save of the
 * medium fleet, which on 2 cores is wall time; `--liftoff-only` keeps the first. hash-wasm's
 * sha256 runs ~10x slower on Liftoff's code, so the wasm hasher keeps TurboFan.
 *
 * Any change of V8's flags makes node refuse its built-in code cache, so every node: module
 * loaded afterwards is compiled from source: the registry client (undici and the node: modules it
 * requires) is loaded first (warm save 1.15 → 1.07 CPU-s; bench/README.md, round 4).
 */
export async function setDownloadFlags(hasher: HasherKind): Promise<void> {
  await import('../registry/http.js');
  setFlagsFromString(`--initial-old-space-size=${DOWNLOAD_OLD_SPACE_MB}`);
  if (hasher !== 'wasm') setFlagsFromString('--liftoff-only');
}
