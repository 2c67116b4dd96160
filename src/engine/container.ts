import { appendFile, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DamagedStateError } from '../files.js';
import { HyperError } from '../errors.js';
import type { GuestNetwork } from '../guest/config.js';
import { vmPaths } from '../vm/paths.js';
import { sleep } from '../process/pids.js';
import { crashExcerpt, crashReason, readConsoleTail, readGuestStatus } from '../vm/status.js';
import { vmDir, type JobContext } from './context.js';
import { forgetCopies, machineWithCopies } from './copy-in.js';
import { listRecords, listVmNames, readRecord, writeRecord, type VmRecord } from './record.js';
import { runHooks } from './hooks.js';

/** How long the guest may take to start its service. */
export const BOOT_TIMEOUT_MS = 120_000;

/** A named volume is one ext4: it can be attached to one running VM at a time. */
export async function checkVolumesFree(
  volumes: readonly string[],
  job: JobContext,
  self?: string,
): Promise<void> {
  const wanted = new Set(volumes);
  if (wanted.size === 0) return;
  for (const record of await listRecords(job)) {
    if (record.name === self) continue;
    const shared = record.disks?.find((d) => d.volume !== undefined && wanted.has(d.volume));
    if (shared && (await job.hypervisor.isRunning(record.machine))) {
      throw new HyperError(
        `volume ${shared.volume} is in use by ${record.name}; a volume can be attached to one running VM at a time`,
        { kind: 'Conflict' },
      );
    }
  }
}

export type VmState = (
  | { running: true }
  | {
      running: false;
      /** Made and never started (docker create): there is no exit to report. */
      created?: boolean;
      exitCode: number | undefined;
      /** Why the guest died when its init could not say, e.g. "kernel panic: ...". */
      crash?: string;
      /** The end of the guest's console, when it crashed. */
      consoleTail?: string;
    }
) & {
  /** How many times the guest init started the service again under its restart policy. */
  restarts?: number;
};

export type StoppedState = Extract<VmState, { running: false }>;

/** "running", "exited (3)", "exited (kernel panic)", "running, restarted 2 times". Pure. */
export function stateText(state: VmState): string {
  const restarts = state.restarts
    ? `, restarted ${state.restarts} time${state.restarts === 1 ? '' : 's'}`
    : '';
  if (state.running) return `running${restarts}`;
  if (state.created) return 'created';
  if (state.crash) return `exited (${state.crash.split(':')[0]})${restarts}`;
  return `exited (${state.exitCode ?? '?'})${restarts}`;
}

/**
 * Running means QEMU is alive and the guest has not reported its service's
 * exit: between that report and the power-off, QEMU still runs, but the
 * service is gone.
 */
export async function vmState(record: VmRecord, job: Pick<JobContext, 'hypervisor'>): Promise<VmState> {
  const paths = vmPaths(record.machine.dir);
  const status = await readGuestStatus(paths.status);
  const restarts = status.restarts > 0 ? { restarts: status.restarts } : {};
  if (status.exitCode !== undefined) return { running: false, exitCode: status.exitCode, ...restarts };
  if (await job.hypervisor.isRunning(record.machine)) return { running: true, ...restarts };
  const console = await readConsoleTail(paths.console);
  const crash = crashReason(console);
  if (!crash)
    return { running: false, exitCode: undefined, ...(neverStarted(record) ? { created: true } : {}) };
  return { running: false, exitCode: undefined, crash, consoleTail: crashExcerpt(console) };
}

/** A VM made by a create that did not boot it, and not booted since; records before startedAt count their bootMs. */
function neverStarted(record: VmRecord): boolean {
  return record.startedAt === undefined && record.bootMs === undefined;
}

export async function requireRecord(job: Pick<JobContext, 'stateDir'>, name: string): Promise<VmRecord> {
  const record = await readRecord(job, name);
  if (!record) throw new HyperError(`no such VM: ${name}`, { kind: 'NotFound' });
  return record;
}

/**
 * Boots a stopped VM again from its record: same disks (so named volumes and
 * the container's own changes are kept), same ports, same settings. With a
 * checkpoint it resumes from that instead of booting; `status` is then what
 * the guest had reported when the checkpoint was taken.
 */
export async function startContainer(
  name: string,
  job: JobContext,
  options: { checkpoint?: string; status?: string; bootTimeoutMs?: number } = {},
): Promise<VmRecord> {
  const record = await requireRecord(job, name);
  if (await job.hypervisor.isRunning(record.machine))
    throw new HyperError(`${name} is already running`, { kind: 'Conflict' });
  const volumes = (record.disks ?? []).flatMap((d) => (d.volume ? [d.volume] : []));
  await checkVolumesFree(volumes, job, name);
  const paths = vmPaths(record.machine.dir);
  for (const file of [paths.pid, paths.qmp, paths.agent]) await rm(file, { force: true });
  await writeFile(paths.status, options.checkpoint ? (options.status ?? '') : '');
  const started = Date.now();
  try {
    // Archives copied in before the first start go in with this boot (never with a checkpoint's).
    const machine = options.checkpoint ? record.machine : await machineWithCopies(record);
    const { origin } = await job.hypervisor.start(
      machine,
      options.checkpoint
        ? { checkpoint: options.checkpoint, network: await guestNetworkOf(record) }
        : { template: job.settings.templates },
    );
    record.origin = origin;
    await job.hypervisor.waitUntilRunning(machine, options.bootTimeoutMs ?? BOOT_TIMEOUT_MS);
    await forgetCopies(record);
  } catch (error: unknown) {
    await job.hypervisor.kill(record.machine).catch(() => undefined);
    throw error;
  }
  record.bootMs = Date.now() - started;
  record.startedAt = new Date(started).toISOString();
  await writeRecord(record);
  await afterStart(record, job);
  return record;
}

/**
 * A VM that has just started runs its post_start hooks, unless it resumed
 * saved state (a checkpoint or service template: the hooks ran before it was
 * saved). One that fails stops the VM, as Compose stops the container.
 */
export async function afterStart(record: VmRecord, job: JobContext): Promise<void> {
  if (!record.postStart?.length || record.origin === 'checkpoint' || record.origin === 'service-template')
    return;
  try {
    await runHooks(record, 'post_start', job);
  } catch (error: unknown) {
    await job.hypervisor
      .stop(record.machine, record.stopGraceMs ?? DEFAULT_STOP_GRACE_MS)
      .catch(() => undefined);
    throw error;
  }
}

/**
 * A resumed checkpoint runs with the network it was taken on; the hypervisor
 * applies this one, from its guest files, which differ when it was imported
 * into another job (another subnet, other services), or when it is a
 * service template's.
 */
export async function guestNetworkOf(record: VmRecord): Promise<GuestNetwork> {
  const dir = vmPaths(record.machine.dir).guestFiles;
  const read = (name: string): Promise<string> => readFile(path.join(dir, name), 'utf8');
  const settings = await read('settings');
  const value = (key: string): string => new RegExp(`^${key}=(.*)$`, 'm').exec(settings)?.[1] ?? '';
  return {
    mac: value('mac') || undefined,
    ip: value('ip'),
    prefix: Number(value('prefix')),
    gateway: value('gateway'),
    hosts: await read('hosts'),
    resolvConf: await read('resolv.conf'),
  };
}

/** Docker's time to stop, when neither the caller nor the service gives one. */
export const DEFAULT_STOP_GRACE_MS = 10_000;

/**
 * Graceful stop (the image's stop signal through the guest), then kill after
 * `graceMs`; undefined: the service's stop_grace_period, else Docker's 10 s.
 * Its pre_stop hooks run first (not for a kill, nor with `hooks: 'skip'`);
 * one that fails ends the stop with a HookError, the VM still running, as
 * Compose aborts it. Returns the exit code.
 */
export async function stopContainer(
  name: string,
  graceMs: number | undefined,
  job: JobContext,
  options: { hooks?: 'run' | 'skip' } = {},
): Promise<number | undefined> {
  const record = await requireRecord(job, name);
  if (options.hooks !== 'skip' && record.preStop?.length && (await vmState(record, job)).running)
    await runHooks(record, 'pre_stop', job);
  const how = await job.hypervisor.stop(
    record.machine,
    graceMs ?? record.stopGraceMs ?? DEFAULT_STOP_GRACE_MS,
  );
  const paths = vmPaths(record.machine.dir);
  const status = await readGuestStatus(paths.status);
  if (how === 'killed' && status.exitCode === undefined) {
    // Killed before the guest could report: record what Docker reports for SIGKILL.
    await appendFile(paths.status, 'exited 137\n');
    return 137;
  }
  return status.exitCode;
}

/** Kills the VM at once (docker kill); its exit code is 137 unless the guest had reported one. */
export async function killContainer(name: string, job: JobContext): Promise<number | undefined> {
  return stopContainer(name, 0, job, { hooks: 'skip' });
}

/** Kills (with force) and removes a VM; it leaves the job network unless `keepMember` (it is about to be booted again). */
export async function removeContainer(
  name: string,
  force: boolean,
  job: JobContext,
  options: { keepMember?: boolean } = {},
): Promise<void> {
  let record: VmRecord;
  try {
    record = await requireRecord(job, name);
  } catch (error: unknown) {
    // A damaged record is reported by every other command; rm -f is how it goes.
    if (!force || !(error instanceof DamagedStateError)) throw error;
    await job.hypervisor.kill({ dir: vmDir(job, name) });
    await rm(vmDir(job, name), { recursive: true, force: true });
    if (!options.keepMember) await job.network.leaveNetwork(job.stateDir, [name]);
    return;
  }
  if (await job.hypervisor.isRunning(record.machine)) {
    if (!force)
      throw new HyperError(
        `cannot remove "${name}": the VM is running; stop it first or use "hyper rm -f ${name}"`,
        { kind: 'Conflict' },
      );
  }
  // Also when it stopped on its own: whatever it left (a virtiofsd) goes with it.
  await job.hypervisor.kill(record.machine);
  await rm(record.machine.dir, { recursive: true, force: true });
  if (!options.keepMember) await job.network.leaveNetwork(job.stateDir, [name]);
}

/** The VM's state once it is no longer running, when that happens within `withinMs` (forever when absent); else undefined. */
export async function stateOnceStopped(
  record: VmRecord,
  job: Pick<JobContext, 'hypervisor'>,
  withinMs?: number,
): Promise<StoppedState | undefined> {
  const deadline = withinMs === undefined ? Infinity : Date.now() + withinMs;
  for (;;) {
    const state = await vmState(record, job);
    if (!state.running) return state;
    if (Date.now() > deadline) return undefined;
    await sleep(100);
  }
}

/** Waits until the container's command has ended (docker wait); its exit code, or undefined if it crashed. */
export async function waitContainer(name: string, job: JobContext): Promise<StoppedState> {
  const record = await requireRecord(job, name);
  const state = await stateOnceStopped(record, job);
  if (!state) throw new HyperError(`${name} did not stop`);
  await poweredOff(record, job);
  return state;
}

/**
 * Waits until QEMU has ended, within `withinMs` (forever when absent);
 * whether it did. The init reports the exit, then syncs and unmounts the
 * volumes before it powers off: a removal or another VM on the same volume
 * waits for that.
 */
export async function poweredOff(
  record: VmRecord,
  job: Pick<JobContext, 'hypervisor'>,
  withinMs?: number,
): Promise<boolean> {
  const deadline = withinMs === undefined ? Infinity : Date.now() + withinMs;
  while (await job.hypervisor.isRunning(record.machine)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export interface ServiceSummary {
  record: VmRecord;
  state: VmState;
  pid: number | undefined;
  /** For a replica: the service it is one of, and why it takes no connections now (absent while it does). */
  replica?: { of: string; outOfRotation?: string };
}

export async function listContainers(job: JobContext): Promise<ServiceSummary[]> {
  const network = await job.network.readNetwork(job.stateDir).catch(() => undefined);
  const summaries: ServiceSummary[] = [];
  for (const record of await listRecords(job)) {
    const member = network?.members.find((m) => m.service === record.name);
    const replica = member?.group
      ? {
          replica: {
            of: member.group,
            ...(member.outOfRotation ? { outOfRotation: member.outOfRotation } : {}),
          },
        }
      : {};
    summaries.push({ ...(await summarize(record, job)), ...replica });
  }
  return summaries;
}

async function summarize(record: VmRecord, job: JobContext): Promise<ServiceSummary> {
  const state = await vmState(record, job);
  const pidText = await readFile(vmPaths(record.machine.dir).pid, 'utf8').catch(() => '');
  return { record, state, pid: state.running ? Number.parseInt(pidText, 10) : undefined };
}

/**
 * For teardown: every VM, with those whose record is damaged set apart (with
 * the error that names the file) instead of failing the whole list, so the
 * rest can still be torn down and the damaged ones removed by name.
 */
export async function listForTeardown(
  job: JobContext,
): Promise<{ services: ServiceSummary[]; damaged: { name: string; error: DamagedStateError }[] }> {
  const services: ServiceSummary[] = [];
  const damaged: { name: string; error: DamagedStateError }[] = [];
  for (const name of await listVmNames(job)) {
    try {
      const record = await readRecord(job, name);
      if (record) services.push(await summarize(record, job));
    } catch (error: unknown) {
      if (!(error instanceof DamagedStateError)) throw error;
      damaged.push({ name, error });
    }
  }
  return { services, damaged };
}
