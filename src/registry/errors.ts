// Registry failures with a kind the CLI can turn into one clear line, never carrying a secret.

export type RegistryErrorKind =
  | 'not-found'
  | 'unauthorized'
  | 'denied'
  | 'unreachable'
  | 'bad-response'
  | 'unsupported'
  | 'digest-mismatch'
  /** Would send credentials in clear to a host the user did not ask plain HTTP for. */
  | 'insecure'
  | 'http';

export class RegistryError extends Error {
  constructor(
    readonly kind: RegistryErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}
