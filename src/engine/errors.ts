// The errors a save ends with, and the one line that describes a failed input. Apart from the
// pipeline so that the CLI can name them without loading it (and with it undici, lmdb, piscina).
import type { Failure } from '../resolve/graph.js';
import type { Summary } from './pipeline.js';
import { OcisaveError } from '../util/errors.js';

/** One line for a failure: registry errors already name the reference, others get the input in front. */
export function describeFailure(f: Failure): string {
  return f.error.includes(f.input) || f.error.includes('/') ? f.error : `${f.input}: ${f.error}`;
}

/** Inputs that failed; its code is the first failure's (each failure carries its own). */
export class SaveError extends OcisaveError {
  constructor(readonly failures: Failure[], readonly summary?: Summary) {
    super(failures[0]?.code ?? 'UNKNOWN', failures.map(describeFailure).join('\n'));
    this.name = 'SaveError';
  }
}

export class InterruptedError extends OcisaveError {
  constructor() {
    super('INTERRUPTED', 'interrupted: downloads are checkpointed in the cache; run the same command again to resume');
    this.name = 'InterruptedError';
  }
}
