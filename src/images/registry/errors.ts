import { type ErrorKind, HyperError, type HyperErrorOptions } from '../../errors.js';

/** A registry answered with an error, or could not be reached. `retryable` says whether trying again may help. */
export class RegistryError extends HyperError {
  /** Unreachable or answering 5xx, mostly; a 404 says NotFound at its throw site. */
  static override defaultKind: ErrorKind = 'Unavailable';
  readonly status?: number;
  readonly code?: string;
  readonly retryable: boolean;
  /** From a `Retry-After` header, when the registry sent one. */
  readonly retryAfterMs?: number;

  constructor(
    message: string,
    details: {
      status?: number;
      code?: string;
      retryable?: boolean;
      retryAfterMs?: number;
    } & HyperErrorOptions = {},
  ) {
    super(message, { kind: details.kind, cause: details.cause });
    this.name = 'RegistryError';
    this.status = details.status;
    this.code = details.code;
    this.retryable = details.retryable ?? (details.status !== undefined && isRetryableStatus(details.status));
    this.retryAfterMs = details.retryAfterMs;
  }
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** The first entry of a registry's `{"errors": [{"code", "message"}]}` body, if it has one. */
export interface RegistryErrorBody {
  code?: string;
  message?: string;
}

const ERROR_BODY_LIMIT = 64 * 1024;

/** Reads the error body of a failed response (bounded), tolerating bodies that are not JSON. */
export async function readErrorBody(response: Response): Promise<RegistryErrorBody> {
  let text: string;
  try {
    text = (await response.text()).slice(0, ERROR_BODY_LIMIT);
  } catch {
    return {};
  }
  return parseErrorBody(text);
}

export function parseErrorBody(text: string): RegistryErrorBody {
  try {
    const parsed: unknown = JSON.parse(text);
    const errors = (parsed as { errors?: unknown }).errors;
    const first: unknown = Array.isArray(errors) ? errors[0] : undefined;
    if (typeof first !== 'object' || first === null) return {};
    const { code, message } = first as Record<string, unknown>;
    return {
      code: typeof code === 'string' ? code : undefined,
      message: typeof message === 'string' ? message : undefined,
    };
  } catch {
    return {};
  }
}

/** "(MANIFEST_UNKNOWN)" or "(HTTP 404)": what the registry said, for the end of a message. */
export function describeStatus(status: number, body: RegistryErrorBody): string {
  if (body.code) return `(${body.code}${body.message ? `: ${body.message}` : ''})`;
  return `(HTTP ${status})`;
}

/** Milliseconds from a `Retry-After` header in seconds or as an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Turns undici's "fetch failed" into a message with the underlying reason (ECONNREFUSED, ...). */
export function networkError(what: string, error: unknown): RegistryError {
  return new RegistryError(`${what}: ${rootCause(error)}`, { retryable: true, cause: error });
}

function rootCause(error: unknown): string {
  let current: unknown = error;
  let message = messageOf(error);
  for (let depth = 0; depth < 5 && hasCause(current); depth++) {
    current = current.cause;
    const code = (current as { code?: unknown }).code;
    const text = messageOf(current);
    message = typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
  }
  return message;
}

// Duck-typed: undici's errors may come from another realm than this module's Error.
function hasCause(value: unknown): value is { cause: unknown } {
  return typeof value === 'object' && value !== null && 'cause' in value && value.cause !== undefined;
}

function messageOf(value: unknown): string {
  const message = (value as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message !== '' ? message : String(value);
}
