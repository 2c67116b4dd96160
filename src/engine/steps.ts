import { firstFailure } from '../process/concurrently.js';

/**
 * One named step of building something in several places (a directory, the
 * job network, disks, a QEMU process), with an undo that is safe to run more
 * than once and on a step that did only part of its work.
 */
export interface Step<Draft> {
  name: string;
  run(draft: Draft): Promise<void>;
  undo?(draft: Draft): Promise<void>;
}

/** Thrown by runSteps: which step failed; the cause is the step's own error, message unchanged. */
export function failedStepName(error: unknown): string | undefined {
  return (error as { step?: string }).step;
}

/**
 * Steps that need nothing of each other: runSteps runs them at once. The
 * list goes on once all have ended; if any failed, the error is the first
 * listed that failed, and every one of them is undone.
 */
export interface Together<Draft> {
  together: readonly Step<Draft>[];
}

export function together<Draft>(steps: readonly Step<Draft>[]): Together<Draft> {
  return { together: steps };
}

/**
 * Runs `steps` in order. When one fails, the steps begun so far are undone in
 * reverse (the failing one included: it may have done part of its work), and
 * the step's error is rethrown with the step's name on it.
 */
export async function runSteps<Draft>(
  steps: readonly (Step<Draft> | Together<Draft>)[],
  draft: Draft,
  log: (line: string) => void = () => undefined,
): Promise<void> {
  const begun: Step<Draft>[] = [];
  let failed: string | undefined;
  try {
    for (const entry of steps) {
      const group = 'together' in entry ? entry.together : [entry];
      begun.push(...group);
      // A run that throws before its first await fails here too, after the others have ended.
      const settled = await Promise.allSettled(
        group.map((step) => Promise.resolve().then(() => step.run(draft))),
      );
      const failure = firstFailure(settled);
      if (failure) {
        failed = group[failure.index]?.name;
        throw failure.reason;
      }
    }
  } catch (error: unknown) {
    for (const step of begun.reverse()) {
      await step.undo?.(draft).catch((undoError: unknown) => {
        log(`undoing ${step.name}: ${(undoError as Error).message}`);
      });
    }
    if (error instanceof Error && failed) Object.assign(error, { step: failed });
    throw error;
  }
}
