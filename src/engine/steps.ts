import { concurrently } from '../process/concurrently.js';

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

/**
 * Steps that need nothing of each other, run at once as one step. It fails
 * when any of them fails, once all have ended, with the error of the first
 * that failed (its name on it); its undo undoes each, in reverse.
 */
export function together<Draft>(steps: readonly Step<Draft>[]): Step<Draft> {
  return {
    name: steps.map((step) => step.name).join(' and '),
    async run(draft) {
      await concurrently(
        steps.map((step) =>
          // A run that throws before its first await fails here too, after the others have ended.
          Promise.resolve()
            .then(() => step.run(draft))
            .catch((error: unknown) => {
              if (error instanceof Error && failedStepName(error) === undefined)
                Object.assign(error, { step: step.name });
              throw error;
            }),
        ),
      );
    },
    async undo(draft) {
      let first: unknown;
      for (const step of [...steps].reverse()) {
        await step.undo?.(draft).catch((error: unknown) => {
          first ??= error;
        });
      }
      if (first !== undefined) throw first;
    },
  };
}

/** Thrown by runSteps: which step failed; the cause is the step's own error, message unchanged. */
export function failedStepName(error: unknown): string | undefined {
  return (error as { step?: string }).step;
}

/**
 * Runs `steps` in order. When one fails, the steps begun so far are undone in
 * reverse (the failing one included: it may have done part of its work), and
 * the step's error is rethrown with the step's name on it.
 */
export async function runSteps<Draft>(
  steps: readonly Step<Draft>[],
  draft: Draft,
  log: (line: string) => void = () => undefined,
): Promise<void> {
  const begun: Step<Draft>[] = [];
  try {
    for (const step of steps) {
      begun.push(step);
      await step.run(draft);
    }
  } catch (error: unknown) {
    const failed = begun.at(-1)?.name;
    for (const step of begun.reverse()) {
      await step.undo?.(draft).catch((undoError: unknown) => {
        log(`undoing ${step.name}: ${(undoError as Error).message}`);
      });
    }
    if (error instanceof Error && failed && failedStepName(error) === undefined)
      Object.assign(error, { step: failed });
    throw error;
  }
}
