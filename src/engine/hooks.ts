import { execArgv } from '../guest/config.js';
import { HyperError } from '../errors.js';
import { trimOutput } from '../process/run.js';
import type { LifecycleHook } from '../spec/container.js';
import type { JobContext } from './context.js';
import type { VmRecord } from './record.js';

/** How long one hook may run. */
const HOOK_TIMEOUT_MS = 10 * 60 * 1000;

/** A lifecycle hook that failed: which, its exit code and the end of its output. */
export class HookError extends HyperError {
  override name = 'HookError';
}

/** The guest argv of a hook: the service's container, as `hyper exec` runs a command, with the hook's own user, directory and environment. Pure. */
export function hookArgv(record: Pick<VmRecord, 'user' | 'workdir'>, hook: LifecycleHook): string[] {
  const argv = execArgv(
    { user: hook.user ?? record.user, workdir: hook.workdir ?? record.workdir },
    hook.command,
    hook.env ?? [],
  );
  // Privileged: the bounding set is left whole, as for a privileged exec.
  if (!hook.privileged) return argv;
  const caps = argv.indexOf('--caps-file');
  return [...argv.slice(0, caps), ...argv.slice(caps + 2)];
}

/**
 * Runs a VM's post_start or pre_stop hooks in order, each in the service's
 * container; the first that fails ends them with a HookError.
 */
export async function runHooks(
  record: VmRecord,
  which: 'post_start' | 'pre_stop',
  job: Pick<JobContext, 'hypervisor'>,
): Promise<void> {
  const hooks = (which === 'post_start' ? record.postStart : record.preStop) ?? [];
  for (const [index, hook] of hooks.entries()) {
    const what = `${which} hook ${index + 1} (${hook.command.join(' ')})`;
    let result;
    try {
      result = await job.hypervisor.exec(record.machine, hookArgv(record, hook), HOOK_TIMEOUT_MS);
    } catch (error: unknown) {
      throw new HookError(`${what} could not run: ${(error as Error).message}`, { cause: error });
    }
    if (result.exitCode === 0) continue;
    const output = trimOutput(`${result.stdout}${result.stderr}`, 5);
    throw new HookError(`${what} exited with code ${result.exitCode}${output ? `:\n${output}` : ''}`);
  }
}
