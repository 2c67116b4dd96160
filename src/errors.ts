/** What went wrong, as a front door must tell it: Docker's API answers 404, 409, 400, 403, 503 and 500 for these. */
export type ErrorKind = 'NotFound' | 'Conflict' | 'Invalid' | 'Forbidden' | 'Unavailable' | 'Internal';

export interface HyperErrorOptions {
  kind?: ErrorKind | undefined;
  cause?: unknown;
}

export class HyperError extends Error {
  /** The kind a subclass's errors have unless a throw site says otherwise. */
  static defaultKind: ErrorKind = 'Internal';
  readonly kind: ErrorKind;

  constructor(message: string, options: HyperErrorOptions = {}) {
    // Only an explicit cause is set, so errors without one do not show `cause: undefined`.
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HyperError';
    this.kind = options.kind ?? (new.target as typeof HyperError).defaultKind;
  }
}

/** A HyperError's kind; anything else is a bug or an unexpected failure. */
export function errorKind(error: unknown): ErrorKind {
  return error instanceof HyperError ? error.kind : 'Internal';
}
