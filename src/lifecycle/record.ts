import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PublishedPort } from '../network/ports.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { MountDisk } from '../storage/mounts.js';
import type { MachineSpec } from '../vm/hypervisor.js';
import { vmPaths } from '../vm/paths.js';
import { stateDir, vmDir } from './dirs.js';

/** Everything kept about one VM, in <state>/vms/<name>/vm.json. */
export interface VmRecord {
  name: string;
  image: string;
  imageDigest: string;
  /** The image's config digest and its config and layer blobs: what a cache of it must hold. */
  imageConfigDigest: string;
  imageBlobs: string[];
  createdAt: string;
  machine: MachineSpec;
  ports: PublishedPort[];
  /** What `hyper exec` needs to enter the container as the service does. */
  user: string;
  workdir: string;
  /** Milliseconds from QEMU's start to the service being started by the guest init. */
  bootMs?: number;
  /** Free-form owner labels, e.g. the job that started the VM. */
  labels: Record<string, string>;
  /** The VM's volume and host-path disks, in mount order. */
  disks?: MountDisk[];
  /** The healthcheck in force (the image's unless the service set one); none when absent. */
  healthcheck?: HealthcheckSpec;
}

export async function writeRecord(record: VmRecord): Promise<void> {
  const file = vmPaths(record.machine.dir).record;
  await writeFile(`${file}.tmp`, JSON.stringify(record, null, 2));
  await rename(`${file}.tmp`, file);
}

export async function readRecord(name: string): Promise<VmRecord | undefined> {
  try {
    return JSON.parse(await readFile(vmPaths(vmDir(name)).record, 'utf8')) as VmRecord;
  } catch {
    return undefined;
  }
}

export async function listRecords(): Promise<VmRecord[]> {
  let names: string[];
  try {
    names = await readdir(path.join(stateDir(), 'vms'));
  } catch {
    return [];
  }
  const records = await Promise.all(names.sort().map((name) => readRecord(name)));
  return records.filter((r): r is VmRecord => r !== undefined);
}
