import { RegistryError } from './errors.js';

/** How often, and after what pause, a failed registry exchange is tried again. */
export interface RetryPolicy {
  /** Total tries, the first included. */
  attempts: number;
  /** Pause before try `attempt + 1`, after try `attempt` (1-based) failed. */
  backoffMs: (attempt: number) => number;
  /** Upper bound on a registry's `Retry-After`. */
  maxRetryAfterMs?: number;
}

/** 5 tries, pausing about 0.5, 1, 2 and 4 s (±20%) in between. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  attempts: 5,
  backoffMs: (attempt) => Math.min(500 * 2 ** (attempt - 1), 8000) * (0.8 + Math.random() * 0.4),
  maxRetryAfterMs: 30_000,
};

export function isRetryable(error: unknown): boolean {
  return error instanceof RegistryError && error.retryable;
}

/**
 * Runs `operation` until it succeeds, fails with an error that is not retryable, or runs out of
 * attempts; the last error then gets "(gave up after N attempts)" added.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  operation: (attempt: number) => Promise<T>,
  onRetry: (error: RegistryError, attempt: number, delayMs: number) => void = () => {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error: unknown) {
      if (!(error instanceof RegistryError) || !error.retryable) throw error;
      if (attempt >= policy.attempts) {
        throw new RegistryError(`${error.message} (gave up after ${attempt} attempts)`, {
          status: error.status,
          code: error.code,
          retryable: false,
          kind: error.kind,
          cause: error,
        });
      }
      const requested = Math.min(error.retryAfterMs ?? 0, policy.maxRetryAfterMs ?? 30_000);
      const delayMs = Math.max(policy.backoffMs(attempt), requested);
      onRetry(error, attempt, delayMs);
      await sleep(delayMs);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
