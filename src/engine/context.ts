import type { IdRange } from '../host/vm-ids.js';
import path from 'node:path';
import type { resolveImage } from '../images/resolve.js';
import type * as jobNetwork from '../network/job.js';
import type { Accel, GuestBundle, Hypervisor } from '../vm/hypervisor.js';
import type { HostSettings, JobSettings } from './settings.js';

/** The job network's driver: what the engine asks of `src/network` (a test or a daemon may pass another). */
export type NetworkDriver = Pick<
  typeof jobNetwork,
  | 'preflightNetwork'
  | 'memberOf'
  | 'joinNetwork'
  | 'leaveNetwork'
  | 'removeNetwork'
  | 'readNetwork'
  | 'memberView'
  | 'addAliases'
  | 'setRotation'
>;

/** What a job is made with, each replaceable: the hypervisor, the image resolver, the network driver. */
export interface JobParts {
  readonly hypervisor: Hypervisor;
  readonly resolveImage: typeof resolveImage;
  readonly network: NetworkDriver;
}

/** What every engine operation works in: one job's state dir, the shared cache, and the parts. */
export interface JobContext extends JobParts {
  readonly stateDir: string;
  readonly cacheDir: string;
  readonly host: HostSettings;
  readonly settings: JobSettings;
}

/** A job on a prepared host: the guest bundle and accelerator are known, so VMs can be made. */
export interface BootContext extends JobContext {
  readonly bundle: GuestBundle;
  readonly accel: Accel;
  /** Under KVM, the named guest CPU model the probe chose; absent: "-cpu host" (src/install/accel.ts). */
  readonly cpuModel?: string;
  /** When hyper is root: the ids its VMs' QEMUs drop to, one each (src/host/vm-ids.ts). */
  readonly vmIds?: IdRange;
}

/**
 * Where the host QEMU's version is kept between processes (knownQemuVersion):
 * each start, snapshot and restore needs it, and asking QEMU costs a start
 * of it.
 */
export function qemuVersionFile(job: Pick<JobContext, 'cacheDir'>): string {
  return path.join(job.cacheDir, 'qemu-version.json');
}

export function vmDir(job: Pick<JobContext, 'stateDir'>, name: string): string {
  return path.join(job.stateDir, 'vms', name);
}
