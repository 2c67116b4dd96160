import path from 'node:path';
import type { Accel, GuestBundle, Hypervisor } from '../vm/hypervisor.js';
import type { HostSettings, JobSettings } from './settings.js';

/** What every engine operation works in: one job's state dir, the shared cache, the hypervisor. */
export interface JobContext {
  readonly stateDir: string;
  readonly cacheDir: string;
  readonly hypervisor: Hypervisor;
  readonly host: HostSettings;
  readonly settings: JobSettings;
}

/** A job on a prepared host: the guest bundle and accelerator are known, so VMs can be made. */
export interface BootContext extends JobContext {
  readonly bundle: GuestBundle;
  readonly accel: Accel;
}

export function vmDir(job: Pick<JobContext, 'stateDir'>, name: string): string {
  return path.join(job.stateDir, 'vms', name);
}
