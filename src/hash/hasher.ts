// One streaming sha256 interface with two implementations:
// - node: node:crypto (uses the CPU's SHA instructions; cannot export its state, so a resumed
//   download re-hashes the partial file's first `offset` bytes from disk);
// - wasm: hash-wasm, whose save()/load() lets a resumed download continue without re-reading.
// bench/ measures both end to end; the default follows those numbers (see README).
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IHasher } from 'hash-wasm';

export type HasherKind = 'node' | 'wasm';
export const HASHER_KINDS: readonly HasherKind[] = ['node', 'wasm'];
export const DEFAULT_HASHER: HasherKind = 'node';

export interface Hasher {
  readonly kind: HasherKind;
  update(chunk: Uint8Array): void;
  /** `sha256:<hex>`; the hasher is finished afterwards. */
  digest(): string;
  /** A checkpoint of the state, or undefined when this implementation cannot export one. */
  save(): Uint8Array | undefined;
}

class NodeHasher implements Hasher {
  readonly kind = 'node' as const;
  constructor(private readonly h: Hash = createHash('sha256')) {}
  update(chunk: Uint8Array): void {
    this.h.update(chunk);
  }
  /** An independent hasher in the same state (push's upload restarts from a chunk's start). */
  copy(): NodeHasher {
    return new NodeHasher(this.h.copy());
  }
  digest(): string {
    return `sha256:${this.h.digest('hex')}`;
  }
  save(): undefined {
    return undefined;
  }
}

class WasmHasher implements Hasher {
  readonly kind = 'wasm' as const;
  constructor(private readonly h: IHasher) {}
  update(chunk: Uint8Array): void {
    this.h.update(chunk);
  }
  digest(): string {
    return `sha256:${this.h.digest('hex')}`;
  }
  save(): Uint8Array {
    return this.h.save();
  }
}

export async function createHasher(kind: HasherKind, state?: Uint8Array): Promise<Hasher> {
  if (kind === 'node') {
    if (state) throw new Error('the node hasher cannot load a saved state');
    return new NodeHasher();
  }
  // Loaded on first use: hash-wasm costs ~0.1 s of startup on every thread that imports it.
  const { createSHA256 } = await import('hash-wasm');
  const h = await createSHA256();
  h.init();
  if (state) h.load(state);
  return new WasmHasher(h);
}

/**
 * A hasher positioned at `offset` bytes into `file`: from the saved state when there is one for
 * this kind, else by hashing the file's first `offset` bytes.
 */
export async function resumeHasher(kind: HasherKind, file: string, offset: number, state?: Uint8Array): Promise<Hasher> {
  if (offset === 0) return createHasher(kind);
  if (kind === 'wasm' && state) return createHasher(kind, state);
  const h = await createHasher(kind);
  for await (const chunk of createReadStream(file, { start: 0, end: offset - 1, highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
  }
  return h;
}

export async function hashFile(file: string, kind: HasherKind = DEFAULT_HASHER): Promise<{ digest: string; size: number }> {
  const h = await createHasher(kind);
  let size = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { digest: h.digest(), size };
}

export function sha256Bytes(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A node:crypto sha256 hasher, made synchronously (for code that cannot await createHasher), that can be copied. */
export type Sha256 = NodeHasher;
export function sha256Hasher(): Sha256 {
  return new NodeHasher();
}

/** The digest and length of everything `stream` yields. */
export async function hashStream(stream: AsyncIterable<Uint8Array>): Promise<{ digest: string; size: number }> {
  const h = new NodeHasher();
  let size = 0;
  for await (const chunk of stream) {
    h.update(chunk);
    size += chunk.length;
  }
  return { digest: h.digest(), size };
}

/** sha256 of a string or bytes as bare hex, for names derived from content that are no digest (hashes of host names, shard keys). */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
