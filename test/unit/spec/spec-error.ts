import { SpecError } from '../../../src/spec/container.js';

/** The message of the SpecError `run` throws, so tables can compare whole messages. */
export function specError(run: () => unknown): string {
  try {
    run();
  } catch (error: unknown) {
    if (error instanceof SpecError) return error.message;
    throw error;
  }
  throw new Error('no SpecError was thrown');
}
