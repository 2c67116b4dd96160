import { DamagedStateError, exists } from '../files.js';
import { listForTeardown, removeContainer, stopContainer, type ServiceSummary } from './container.js';
import { vmDir, type JobContext } from './context.js';
import { listVmNames, type VmRecord } from './record.js';
import { stopBalancers } from './balancer.js';
import { isReplicaName } from '../spec/plan.js';
import { HookError } from './hooks.js';

export interface DownOptions {
  /** How long each service may take to stop on its stop signal before it is killed; else its own stop_grace_period, or 10 s. */
  graceMs: number | undefined;
  /** Only the VMs this says yes to (hyper down -f FILE); every VM when absent. */
  select?: ((record: VmRecord) => boolean) | undefined;
  /**
   * The post step's way: a failure is reported and teardown goes on, and the
   * network goes whatever is left. Otherwise (hyper down) the first failure
   * ends it, and the network goes once no VM is left.
   */
  keepGoing: boolean;
}

/** What a front door shows as teardown goes. */
export interface DownHooks {
  /** A VM whose record cannot be read; `removing` unless a selection cannot tell whether it is selected. */
  damaged(name: string, error: DamagedStateError, removing: boolean): void;
  removedDamaged?(name: string): void;
  /** Before a VM is stopped: the post step shows its logs and reads its usage here. */
  before?(service: ServiceSummary): Promise<void>;
  stopped(name: string, exitCode: number | undefined): void;
  /** What went wrong with one VM (or the network), teardown going on: with keepGoing, or a pre_stop hook that failed. */
  failed(what: string, error: unknown): void;
}

/** Stops and removes the job's VMs, then the job network: what both the post step and `hyper down` do. */
export async function downJob(job: JobContext, options: DownOptions, hooks: DownHooks): Promise<void> {
  const { services, damaged } = await listForTeardown(job);
  // The network's record may be damaged too: every VM still goes, and that is reported at the end.
  let networkDamage: unknown;
  const attempt = async (name: string, work: () => Promise<void>): Promise<boolean> => {
    try {
      await work();
      return true;
    } catch (error: unknown) {
      if (error instanceof DamagedStateError && !(await exists(vmDir(job, name)))) {
        networkDamage ??= error;
        return true;
      }
      if (!options.keepGoing) throw error;
      hooks.failed(name, error);
      return false;
    }
  };
  for (const { name, error } of damaged) {
    // With a selection, a VM whose record cannot be read cannot be told to be selected: it is only reported.
    hooks.damaged(name, error, !options.select);
    if (options.select) continue;
    if (await attempt(name, () => removeContainer(name, true, job))) hooks.removedDamaged?.(name);
  }
  // The replicas' balancers go first, so no connection is sent to a replica that is stopping.
  const selected = services
    .filter((s) => !options.select || options.select(s.record))
    .map((s) => s.record.name);
  await stopBalancers(
    job,
    (group) => !options.select || selected.some((name) => isReplicaName(name, group)),
  ).catch((error: unknown) => {
    if (!options.keepGoing) throw error;
    hooks.failed('the balancers', error);
  });
  for (const service of services) {
    const { name } = service.record;
    if (options.select && !options.select(service.record)) continue;
    await hooks.before?.(service);
    let code: number | undefined;
    const done = await attempt(name, async () => {
      // Teardown goes on past a failing pre_stop hook: it is reported, and the VM stopped without it.
      code = await stopContainer(name, options.graceMs, job).catch((error: unknown) => {
        if (!(error instanceof HookError)) throw error;
        hooks.failed(name, error);
        return stopContainer(name, options.graceMs, job, { hooks: 'skip' });
      });
      await removeContainer(name, true, job);
    });
    if (done) hooks.stopped(name, code);
  }
  if (networkDamage) {
    if (!options.keepGoing) throw networkDamage;
    hooks.failed('the job network', networkDamage);
  }
  // Whatever is left of the job network (a service that never booted) goes too.
  if (options.keepGoing || (await listVmNames(job)).length === 0) {
    await job.network.removeNetwork(job.stateDir).catch((error: unknown) => {
      if (!options.keepGoing) throw error;
      hooks.failed('the job network', error);
    });
  }
}
