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
    if (error instanceof Error && failed) Object.assign(error, { step: failed });
    throw error;
  }
}
