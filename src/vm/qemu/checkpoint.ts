// Checkpoints on the mechanism of boot templates: the guest's RAM in a file
// that a restored VM maps copy-on-write, and the device state saved beside
// it. A running VM's RAM is anonymous (or a template's file mapped
// privately), so it cannot be saved that way itself: it migrates into a
// capture machine whose RAM is a shared file, and that machine saves its
// device state without the RAM, as a template is saved.
import { mkdir, mkdtemp, open, readFile, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { trimOutput } from '../../process/run.js';
import type { MachineSpec } from '../hypervisor.js';
import { checkpointPaths, vmPaths } from '../paths.js';
import { sleep } from '../../process/pids.js';
import { diskNode, qemuArgs, ROOT_NODE } from './args.js';
import { QmpClient } from './qmp.js';
import { waitForMigration } from './template.js';
import { type Jail, pathInJail, shortAlias, vmJail } from './jail.js';
import { cgroupName, machineLimits, qemuNetns, saveState, spawnQemu } from './spawn.js';
import { VmCgroups } from '../../host/cgroups.js';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** The block nodes a checkpoint keeps a snapshot of: the root disk and every writable further disk. */
export function writableNodes(spec: MachineSpec): string[] {
  return [ROOT_NODE, ...(spec.disks ?? []).filter((d) => !d.readOnly).map((d) => diskNode(d.serial))];
}

/**
 * Saves checkpoint `tag` of the running VM `spec`: its writable disks as
 * qcow2 internal snapshots `tag`, and its RAM and device state in
 * checkpointPaths(spec.dir, tag). The VM is paused from the disk snapshots
 * until its RAM has moved out, and runs on whatever happens. On failure
 * nothing is kept: neither the checkpoint's files nor the disk snapshots.
 */
export async function captureCheckpoint(
  qemu: string,
  spec: MachineSpec,
  tag: string,
  hostTscKhz: number,
  timeoutMs: number,
  confine = true,
  cgroups = new VmCgroups(),
): Promise<void> {
  const held = new HeldVm(vmPaths(spec.dir).qmp);
  try {
    await runCapture(qemu, spec, tag, hostTscKhz, timeoutMs, { confine, cgroups }, held);
  } catch (error: unknown) {
    const problems = await undo(held, spec, tag);
    if (problems.length === 0) throw error;
    throw new CheckpointError(`${(error as Error).message}; and undoing it: ${problems.join('; ')}`, {
      cause: error,
    });
  } finally {
    held.close();
  }
}

/**
 * The VM a checkpoint pauses: its QMP connection, held only while the
 * checkpoint uses it (QEMU serves one QMP client at a time), and what has
 * been done to it.
 */
class HeldVm {
  private client: QmpClient | undefined;
  /** Stopped by the checkpoint and not run again yet. */
  paused = false;
  /** Stopped once (it ran before): its disks may hold the checkpoint's snapshots. */
  stopped = false;
  /** QEMU took this checkpoint's `migrate`: query-migrate speaks of it, not of an earlier one. */
  migrating = false;

  constructor(private readonly socket: string) {}

  async qmp(): Promise<QmpClient> {
    this.client ??= await QmpClient.connect(this.socket, 5000);
    return this.client;
  }

  /**
   * Stops a running guest. One QEMU stopped already (on a disk error) is
   * refused: a migration out of it would leave its disks released until it
   * runs, and a snapshot cannot be deleted from a released disk.
   */
  async pause(name: string): Promise<void> {
    const qmp = await this.qmp();
    const status = (await qmp.execute('query-status')) as { running: boolean; status: string };
    if (!status.running)
      throw new CheckpointError(
        `the guest of ${name} is not running (QEMU reports "${status.status}"); a checkpoint is taken of a running guest`,
      );
    // Marked first: a `stop` that times out may still have stopped it.
    this.stopped = true;
    this.paused = true;
    await qmp.execute('stop');
  }

  /** Runs the VM again, once, if the checkpoint paused a running VM. */
  async resume(): Promise<void> {
    if (!this.paused) return;
    await (await this.qmp()).execute('cont');
    this.paused = false;
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

/**
 * After a failed capture, whose files are gone by now (a disk the RAM filled
 * has its space back): deletes the disk snapshots before the VM runs on. A
 * snapshot shares every cluster, so each guest write copies one, and on a
 * full disk QEMU stops the guest (werror=enospc). A VM that ran before runs
 * again whatever state it is found in (stopped so meanwhile, or left
 * paused by a step that failed). Each step is tried whatever the others
 * did; what failed is returned.
 */
async function undo(held: HeldVm, spec: MachineSpec, tag: string): Promise<string[]> {
  const problems: string[] = [];
  const step = async (what: string, action: () => Promise<void>): Promise<void> => {
    await action().catch((error: unknown) => {
      problems.push(`${what}: ${(error as Error).message}`);
      // A request that failed may still be answered late: the next step connects afresh.
      held.close();
    });
  };
  if (!held.stopped) return problems;
  let migration: string | undefined;
  if (held.migrating)
    await step('ending the move', async () => {
      migration = await settleMigration(await held.qmp());
    });
  // A completed migration has let go of the disks; only `cont` takes them back.
  if (migration === 'completed') await step('running the VM again', () => held.resume());
  // Never on released disks (QEMU's block layer may abort on a write there): the snapshots stay, and the error says so.
  if (migration === 'completed' && held.paused) problems.push(`the snapshots "${tag}" stay on its disks`);
  else
    await step('deleting the disk snapshots', async () =>
      deleteDiskSnapshots(await held.qmp(), writableNodes(spec), tag),
    );
  // It ran before the checkpoint: whatever stopped it since (this checkpoint, a failed step, ENOSPC) ends here.
  await step('running the VM again', async () => {
    const qmp = await held.qmp();
    if (!((await qmp.execute('query-status')) as { running: boolean }).running) await qmp.execute('cont');
  });
  return problems;
}

/**
 * Ends the VM's outgoing migration, if one is still under way, and returns
 * how it ended.
 */
async function settleMigration(vm: QmpClient): Promise<string | undefined> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const info = (await vm.execute('query-migrate')) as { status?: string };
    if (info.status === undefined || SETTLED.has(info.status) || Date.now() > deadline) return info.status;
    await vm.execute('migrate_cancel').catch(() => undefined);
    await sleep(10);
  }
}

const SETTLED = new Set(['none', 'completed', 'failed', 'cancelled']);

/**
 * Deletes internal snapshot `tag` from these block nodes of a running QEMU;
 * a node without it is skipped. Every node is tried; what failed is thrown after.
 */
export async function deleteDiskSnapshots(
  qmp: QmpClient,
  nodes: readonly string[],
  tag: string,
): Promise<void> {
  const failed: string[] = [];
  for (const node of nodes) {
    await qmp
      .execute('blockdev-snapshot-delete-internal-sync', { device: node, name: tag })
      .catch((error: unknown) => {
        const message = (error as Error).message;
        if (!/not found|does not exist|can't find|cannot find/i.test(message))
          failed.push(`${node}: ${message}`);
      });
  }
  if (failed.length)
    throw new CheckpointError(`snapshot ${tag} could not be deleted from ${failed.join('; ')}`);
}

/** The capture itself: on failure its files are gone, and the VM (`held`) is the caller's to undo. */
async function runCapture(
  qemu: string,
  spec: MachineSpec,
  tag: string,
  hostTscKhz: number,
  timeoutMs: number,
  { confine, cgroups }: { confine: boolean; cgroups: VmCgroups },
  held: HeldVm,
): Promise<void> {
  const target = checkpointPaths(spec.dir, tag);
  const partial = `${target.dir}.partial-${process.pid}`;
  // The capture machine is jailed with the VM, as the VM's own ids: the VM connects to it there.
  const jail = await vmJail(qemu, spec.dir, undefined, confine);
  const alias = await shortAlias(jail.dir);
  // The capture machine's sockets go in a short directory of their own: the VM's dir may be deep.
  const run = await mkdtemp(path.join(os.tmpdir(), 'hyper-capture-')).catch(async (error: unknown) => {
    await alias.remove();
    throw error;
  });
  const ram = path.join(partial, 'ram');
  const state = path.join(partial, 'state');
  const capture = { ...spec, dir: run };
  const paths = vmPaths(run);
  const cgroup = cgroupName('capture', run);
  let exit: string | undefined;
  const log = await open(paths.qemuLog, 'a').catch(async (error: unknown) => {
    await rm(run, { recursive: true, force: true });
    await alias.remove();
    throw error;
  });
  try {
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    await rm(path.join(jail.dir, 'capture.sock'), { force: true });
    const limits = confine ? await cgroups.make(cgroup, machineLimits(spec)) : { reason: 'HYPER_JAIL=off' };
    const launch = { kind: 'capture', ram } as const;
    const child = spawnQemu(qemu, qemuArgs(capture, hostTscKhz, launch, jail), {
      output: log.fd,
      procs: 'procs' in limits ? limits.procs : [],
      netns: qemuNetns(capture, launch, jail),
    });
    child.on('exit', (code, signal) => (exit = signal ? `ended by ${signal}` : `exited with code ${code}`));
    child.on('error', (error) => (exit = `could not start: ${error.message}`));
    try {
      const machine = await connectWhileAlive(paths.qmp, () => exit);
      try {
        // Both machines reach this socket by the same path: each is in the VM's jail (or neither is).
        const channel = `unix:${captureSocket(jail, alias.path)}`;
        await machine.execute('migrate-incoming', { uri: channel });
        await moveOut(held, spec, tag, channel, timeoutMs, () => exit);
        await waitForMigration(machine, timeoutMs);
        await machine.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'x-ignore-shared', state: true }],
        });
        await saveState(machine, jail, state, (qmp) => waitForMigration(qmp, timeoutMs));
        await machine.execute('quit').catch(() => undefined);
      } finally {
        machine.close();
      }
      await waitForEnd(() => exit, 10_000);
    } catch (error: unknown) {
      const qemuLog = trimOutput(await readFile(paths.qemuLog, 'utf8').catch(() => ''), 4);
      throw new CheckpointError(
        `${captureFailure(exit, (error as Error).message, ram)}${qemuLog ? `: ${qemuLog}` : ''}`,
        { cause: error },
      );
    } finally {
      if (exit === undefined) child.kill('SIGKILL');
      await waitForEnd(() => exit, 10_000).catch(() => undefined);
    }
    await rm(target.dir, { recursive: true, force: true });
    await mkdir(path.dirname(target.dir), { recursive: true });
    await rename(partial, target.dir);
  } finally {
    // The RAM file first: it may be what fills the disk. Each step whatever the others do.
    const quietly = (done: Promise<unknown>) => done.catch(() => undefined);
    await quietly(rm(partial, { recursive: true, force: true }));
    await quietly(log.close());
    await quietly(cgroups.remove(cgroup));
    await quietly(alias.remove());
    await quietly(rm(path.join(jail.dir, 'capture.sock'), { force: true }));
    await quietly(rm(run, { recursive: true, force: true }));
  }
}

/** The socket the capture machine listens on, as both QEMUs see it. Pure. */
function captureSocket(jail: Jail, alias: string): string {
  return pathInJail(jail, alias, 'capture.sock');
}

/**
 * Pauses the VM, snapshots its writable disks, and migrates it (all of its
 * RAM) into the capture machine listening on `channel`; then the VM runs on.
 * On failure it stays paused, for undo().
 */
async function moveOut(
  held: HeldVm,
  spec: MachineSpec,
  tag: string,
  channel: string,
  timeoutMs: number,
  captureExit: () => string | undefined,
): Promise<void> {
  await held.pause(spec.name);
  const vm = await held.qmp();
  // Stopped, QEMU has drained and flushed every disk: the snapshots match the RAM.
  await vm.execute('transaction', {
    actions: writableNodes(spec).map((node) => ({
      type: 'blockdev-snapshot-internal-sync',
      data: { device: node, name: tag },
    })),
  });
  // QEMU's default cap (128 MiB/s) would make a large guest's pause seconds long.
  await vm.execute('migrate-set-parameters', { 'max-bandwidth': MIGRATION_BANDWIDTH });
  await vm.execute('migrate', { uri: channel });
  held.migrating = true;
  // A capture machine that died (a full disk under its RAM file is SIGBUS) fails the migration, or leaves it waiting: undo() cancels it.
  await waitForMigration(vm, timeoutMs);
  // After a migration QEMU has let go of the disks; `cont` takes them back.
  await held.resume();
  // Nothing else here needs the VM's QMP: others may use it meanwhile.
  held.close();
  if (captureExit() !== undefined) throw new CheckpointError('the capture machine ended during the move');
}

/** Connects to a starting QEMU's QMP socket, failing at once if the process ends first. */
async function connectWhileAlive(socket: string, exit: () => string | undefined): Promise<QmpClient> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const ended = exit();
    if (ended !== undefined) throw new CheckpointError(`the capture machine ${ended} at start`);
    try {
      return await QmpClient.connect(socket, 1000);
    } catch (error: unknown) {
      if (Date.now() > deadline)
        throw new CheckpointError(
          `the capture machine did not answer within 15 s: ${(error as Error).message}`,
        );
    }
    await sleep(20);
  }
}

async function waitForEnd(exit: () => string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (exit() === undefined) {
    if (Date.now() > deadline) throw new CheckpointError('the capture machine did not quit');
    await sleep(10);
  }
}

/**
 * What a failed capture tells the user. QEMU gets SIGBUS when a page of a
 * file-backed RAM cannot be written: the file's filesystem is full. Pure.
 */
export function captureFailure(exit: string | undefined, message: string, ram: string): string {
  if (exit === 'ended by SIGBUS') return `the RAM could not be written to ${ram} (${message})`;
  if (exit !== undefined && exit !== 'exited with code 0') return `the capture machine ${exit}: ${message}`;
  return message;
}

/** Bytes per second: as fast as the host can copy. */
const MIGRATION_BANDWIDTH = 64 * 1024 * 1024 * 1024;
