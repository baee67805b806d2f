// What a blob upload sends is hashed as it goes, so a bundle file whose bytes do not match its
// digest (one flipped byte, a truncated copy) is caught before the final PUT that would commit it
// at the target: a lax registry stores whatever it is given, and distribution only refuses it at
// the PUT, after every byte crossed the network.
//
// Chunks can be cut short or resent (a reset, a registry that kept less than was sent), so the
// hash follows what the registry holds, not what was read: before each chunk it is brought to the
// registry's offset, from a copy taken when the chunk started or, failing that, from byte 0.
import { sha256Hasher, type Sha256 } from '../hash/hasher.js';
import { Transform, type Readable } from 'node:stream';
import { OcisaveError } from '../util/errors.js';

/** Bundle bytes that do not hash to the digest they are stored under. */
export class CorruptBlobError extends OcisaveError {
  constructor(
    readonly digest: string,
    message: string,
  ) {
    super('DIGEST_MISMATCH', message);
    this.name = 'CorruptBlobError';
  }
}

export class UploadHash {
  private hash: Sha256 = sha256Hasher();
  /** Bytes [0, pos) are in `hash`. */
  private pos = 0;
  private mark = { hash: sha256Hasher(), pos: 0 };

  constructor(
    private readonly digest: string,
    private readonly read: (start: number, end: number) => Readable,
  ) {}

  /** The body of a chunk of bytes from `start`, hashed as it flows when it continues the hash. */
  tap(start: number, body: Readable): Readable {
    this.mark = { hash: this.hash.copy(), pos: this.pos };
    if (start !== this.pos) return body; // syncTo catches up from the file
    const tap = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.hash.update(chunk);
        this.pos += chunk.length;
        cb(null, chunk);
      },
    });
    body.on('error', (e) => tap.destroy(e));
    return body.pipe(tap);
  }

  /** Make the hash cover exactly bytes [0, at): what the registry says it holds. */
  async syncTo(at: number): Promise<void> {
    if (at < this.pos) {
      const from = at >= this.mark.pos ? this.mark : { hash: sha256Hasher(), pos: 0 };
      this.hash = from.hash.copy();
      this.pos = from.pos;
    }
    if (at > this.pos) {
      for await (const chunk of this.read(this.pos, at - 1)) {
        const b = chunk as Buffer;
        const take = Math.min(b.length, at - this.pos);
        this.hash.update(b.subarray(0, take));
        this.pos += take;
      }
    }
    if (this.pos !== at) throw new CorruptBlobError(this.digest, `blob ${this.digest} in the bundle ends at byte ${this.pos}, before the ${at} it must hold: the bundle is damaged (run ocisave verify)`);
  }

  /** After the last chunk: the bytes sent must hash to the digest, else the upload must not be completed. */
  async check(size: number): Promise<void> {
    await this.syncTo(size);
    const got = this.hash.copy().digest();
    if (got !== this.digest) {
      throw new CorruptBlobError(this.digest, `blob ${this.digest} in the bundle hashes to ${got}: the bundle is damaged (run ocisave verify); its upload was abandoned before completion`);
    }
  }
}
