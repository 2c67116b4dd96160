import type { LocalImage } from '../images/image.js';
import type { MemberRequest } from '../network/job.js';
import { trimOutput } from '../process/run.js';
import type { ContainerSpec } from '../spec/container.js';
import { errorKind, HyperError } from '../errors.js';
import { poweredOff, removeContainer, stateOnceStopped, type StoppedState } from './container.js';
import type { BootContext } from './context.js';
import type { VmRecord } from './record.js';
import type { Reporter } from './host.js';
import { runContainer } from './run.js';
import { logText } from './streams.js';

/**
 * Runs a service's pre_start steps (compose init containers) in order, each
 * a one-shot VM booted on the service's mounts, joined to the job network
 * from `planned` while it runs, waited for, and removed whatever happened.
 * A step that exits non-zero, crashes or outlasts `timeoutMs` is a
 * PreStartError with its output.
 */
export async function runPreStart(
  service: string,
  steps: readonly ContainerSpec[],
  planned: ReadonlyMap<string, { member: MemberRequest; image: LocalImage }>,
  job: BootContext,
  timeoutMs: number,
  reporter: Reporter,
): Promise<void> {
  for (const [index, step] of steps.entries()) {
    const what = `pre_start step ${index + 1} of ${steps.length} (${step.name})`;
    const started = Date.now();
    const plan = planned.get(step.name);
    let record: VmRecord;
    try {
      // On the network only while it runs: it reaches its service's dependencies, and no peer lists it.
      if (plan) await job.network.joinNetwork(job.stateDir, job.settings.network, [plan.member], reporter);
      record = await runContainer(step, job, {
        resolved: plan?.image,
        log: (line) => reporter.info(`${step.name}: ${line}`),
      });
    } catch (error: unknown) {
      // runContainer has undone what it made; the network member is this step's to take back.
      await job.network.leaveNetwork(job.stateDir, [step.name]).catch(() => undefined);
      throw new PreStartError(
        step.name,
        `service ${service}: ${what} failed to start: ${(error as Error).message}`,
        '',
        error,
      );
    }
    let ended: StoppedState | undefined;
    let log: string;
    try {
      ended = await stateOnceStopped(record, job, timeoutMs);
      // What it wrote is on its volumes once its init has unmounted them and QEMU has ended.
      if (ended && !(await poweredOff(record, job, timeoutMs))) ended = undefined;
      log = await logText(step.name, job).catch(() => '');
    } finally {
      await removeContainer(step.name, true, job).catch((error: unknown) => {
        reporter.warn(`${step.name}: not removed: ${(error as Error).message}`);
      });
    }
    const tail = trimOutput(log, 10);
    const output = tail ? `; the end of its output:\n${tail}` : '';
    if (!ended)
      throw new PreStartError(
        step.name,
        `service ${service}: ${what} did not finish within ${Math.round(timeoutMs / 1000)} s, the wait timeout; it was killed${output}`,
        log,
      );
    if (ended.exitCode !== 0)
      throw new PreStartError(
        step.name,
        `service ${service}: ${what} exited with ${
          ended.exitCode === undefined ? (ended.crash ?? 'no exit code') : `code ${ended.exitCode}`
        }${output}`,
        log,
      );
    reporter.info(`${service}: ${what} exited 0 after ${Date.now() - started} ms`);
  }
}

/** A pre_start step that failed: the message names the step, `log` is all of its output. */
export class PreStartError extends HyperError {
  override name = 'PreStartError';
  constructor(
    /** The step's VM, whose output `log` is. */
    readonly step: string,
    message: string,
    readonly log: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? {} : { kind: errorKind(cause), cause });
  }
}
