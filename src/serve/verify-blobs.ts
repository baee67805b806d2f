// `serve --verify-blobs`: a blob is hashed from the bundle the first time a client asks for its
// bytes, before any byte is sent; one that does not match its digest is refused from then on, so
// a bundle damaged on its way in is not passed on. Verdicts last as long as the process: the
// bundle is not meant to change while it is served.
import type { Bundle } from '../bundle/types.js';
import { Semaphore } from '../util/limit.js';
import { hashStream, sha256Bytes } from '../hash/hasher.js';

/**
 * Blobs hashed at once. Each holds two 1 MiB reads, so clients asking for many different blobs
 * together cost a few MiB, not a few MiB each; two keep both cores busy.
 */
const PARALLEL_HASHES = 2;

export class BlobVerifier {
  private readonly verdicts = new Map<string, Promise<boolean>>();
  private readonly bad = new Set<string>();
  private readonly goodBytes = new Set<string>();
  private readonly slots = new Semaphore(PARALLEL_HASHES);

  constructor(
    private readonly bundle: Bundle,
    private readonly onBad?: (digest: string) => void,
  ) {}

  /** Already found corrupt (HEAD asks this: it sends no bytes, so it does not hash). */
  isBad(digest: string): boolean {
    return this.bad.has(digest);
  }

  /**
   * Whether the blob's bytes hash to its digest; hashed once, whoever asks meanwhile shares the
   * answer. The hash runs to its end even when the client that asked goes away.
   */
  verify(digest: string): Promise<boolean> {
    let verdict = this.verdicts.get(digest);
    if (!verdict) {
      verdict = this.hash(digest);
      this.verdicts.set(digest, verdict);
    }
    return verdict;
  }

  /** The same for manifest bytes already in memory, hashed once per digest too. */
  verifyBytes(digest: string, bytes: Buffer): boolean {
    if (this.bad.has(digest)) return false;
    if (this.goodBytes.has(digest)) return true;
    const ok = sha256Bytes(bytes) === digest;
    if (ok) this.goodBytes.add(digest);
    else this.refuse(digest);
    return ok;
  }

  private refuse(digest: string): void {
    this.bad.add(digest);
    this.onBad?.(digest);
  }

  private async hash(digest: string): Promise<boolean> {
    const release = await this.slots.acquire();
    try {
      const ok = (await hashStream(this.bundle.openBlob(digest))).digest === digest;
      if (!ok) this.refuse(digest);
      return ok;
    } catch (err) {
      // A read that failed says nothing about the bytes: the next request tries again.
      this.verdicts.delete(digest);
      throw err;
    } finally {
      release();
    }
  }
}
