import type { RestartPolicy } from '../guest/config.js';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { HyperError } from '../errors.js';
import { readStateFile, writeFileAtomic } from '../files.js';
import path from 'node:path';
import type { PublishedPort } from '../network/ports.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { MountDisk } from '../storage/mounts.js';
import type { MachineSpec, StartOrigin } from '../vm/hypervisor.js';
import { vmPaths } from '../vm/paths.js';
import { vmDir, type JobContext } from './context.js';
import type { ServiceTemplateKey } from './template-key.js';
import type { LifecycleHook } from '../spec/container.js';

/** How a start is told to the user: the summary, `hyper ps`. Pure. */
export function describeOrigin(origin: StartOrigin | undefined): string {
  if (origin === 'boot-template') return 'boot template';
  if (origin === 'service-template') return 'service template';
  if (origin === 'checkpoint') return 'checkpoint';
  return 'full boot';
}

/** Everything kept about one VM, in <state>/vms/<name>/vm.json. */
export interface VmRecord {
  /** 64 hex digits, as Docker's container ids; absent in records made before ids. */
  id?: string;
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
  /** How it last came up: booted in full, cloned from a boot template or a service template, or loaded from a checkpoint. */
  origin?: StartOrigin;
  /**
   * The service template this VM's state is kept as once it is first
   * healthy (`up` does that), or was resumed from: its key, and the root
   * filesystem base it runs on.
   */
  serviceTemplate?: { key: ServiceTemplateKey; base: string };
  /** When the VM was last booted (ISO 8601); absent while it was created and never started. */
  startedAt?: string;
  /** Free-form owner labels, e.g. the job that started the VM. */
  labels: Record<string, string>;
  /** The VM's volume and host-path disks, in mount order. */
  disks?: MountDisk[];
  /** The healthcheck in force (the image's unless the service set one); none when absent. */
  healthcheck?: HealthcheckSpec;
  /** Archives put into the VM while it was created and not yet started; unpacked by the guest at its next boot. */
  copyIn?: { serial: string; file: string; target: string }[];
  /** The named networks (docker network create) it is on, with its aliases on each. */
  networks?: Record<string, { aliases: string[] }>;
  /** The command the service runs (entrypoint and cmd merged), and its environment: what inspect shows. */
  argv?: string[];
  env?: string[];
  /** How long a stop waits after the stop signal before it kills, when the service set it; else the caller's. */
  stopGraceMs?: number;
  /** The restart policy the guest init carries out, when there is one. */
  restart?: { policy: RestartPolicy; maxRetries?: number };
  /** Compose lifecycle hooks: run once the VM has started (not when it resumes saved state), and before a stop. */
  postStart?: LifecycleHook[];
  preStop?: LifecycleHook[];
}

export async function writeRecord(record: VmRecord): Promise<void> {
  await writeFileAtomic(vmPaths(record.machine.dir).record, JSON.stringify(record, null, 2));
}

/** What to do about a damaged vm.json: `hyper rm -f` removes the VM without it. */
export function damagedRecordRemedy(name: string): string {
  return `remove that VM with "hyper rm -f ${name}" (its QEMU is stopped and its directory removed; named volumes stay)`;
}

/** The VM's record; undefined when there is no such VM, a DamagedStateError when its vm.json is damaged. */
export async function readRecord(
  job: Pick<JobContext, 'stateDir'>,
  name: string,
): Promise<VmRecord | undefined> {
  return readStateFile<VmRecord>(vmPaths(vmDir(job, name)).record, damagedRecordRemedy(name));
}

/** A new VM's id: 32 random bytes in hex, as Docker's. */
export function newVmId(): string {
  return randomBytes(32).toString('hex');
}

/**
 * The name of the VM `ref` refers to, as Docker resolves a container
 * reference: a name first, else a unique prefix of an id. Undefined when
 * none matches; an error when a prefix matches more than one.
 */
export async function resolveVm(job: Pick<JobContext, 'stateDir'>, ref: string): Promise<string | undefined> {
  const names = await listVmNames(job);
  if (names.includes(ref)) return ref;
  if (!/^[0-9a-f]{1,64}$/.test(ref)) return undefined;
  const matches: string[] = [];
  for (const name of names) {
    const record = await readRecord(job, name).catch(() => undefined);
    if (record?.id?.startsWith(ref)) matches.push(name);
  }
  if (matches.length > 1)
    throw new HyperError(
      `"${ref}" is the start of more than one VM's id (${matches.join(', ')}); give more of it`,
      {
        kind: 'Conflict',
      },
    );
  return matches[0];
}

/** The names of the VMs in the state dir, whether or not their records can be read. */
export async function listVmNames(job: Pick<JobContext, 'stateDir'>): Promise<string[]> {
  try {
    return (await readdir(path.join(job.stateDir, 'vms'))).sort();
  } catch {
    return [];
  }
}

/** Every VM's record; a damaged one is an error naming its file. */
export async function listRecords(job: Pick<JobContext, 'stateDir'>): Promise<VmRecord[]> {
  const records = await Promise.all((await listVmNames(job)).map((name) => readRecord(job, name)));
  return records.filter((r): r is VmRecord => r !== undefined);
}
