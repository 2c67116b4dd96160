import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type ErrorKind, HyperError } from '../../errors.js';
import { cpuIdentity, guestTscKhz, readCpuInfo } from '../../host/cpuinfo.js';
import { type AgentLease, agentPool } from '../agent-pool.js';
import { execStream } from '../exec-stream.js';
import { relayStreams } from '../stream-relay.js';
import { logRecordsText } from '../log-records.js';
import { canShare, startShares, stopShares } from './virtiofs.js';
import type {
  ExecResult,
  ExecStream,
  Hypervisor,
  MachineSpec,
  StartOptions,
  Started,
} from '../hypervisor.js';
import { checkpointPaths, MAX_SOCKET_PATH, vmPaths } from '../paths.js';
import { captureCheckpoint, deleteDiskSnapshots } from './checkpoint.js';
import { exists } from '../../files.js';
import { isOurProcess, readPid, sleep, waitForExit } from '../../process/pids.js';
import { readGuestStatus } from '../status.js';
import { trimOutput } from '../../process/run.js';
import { type GuestNetwork, hostClockNs, resumeSyncArgv } from '../../guest/config.js';
import { qemuImg } from '../../tools/qemu/img.js';
import { knownQemuVersion, qemuAtLeast } from '../../tools/qemu/version.js';
import {
  CONTROL_FD,
  DISK_SLOTS,
  diskNode,
  fitsSlots,
  hasControlPort,
  type Launch,
  qemuArgs,
  ROOT_NODE,
} from './args.js';
import { type BootTemplate, templateIdentity, type TemplateStore, waitForMigration } from './template.js';
import { controlAnswerProblem, controlFrame, resumeFiles } from '../../guest/control.js';
import { QmpClient } from './qmp.js';
import { releaseJail, vmJail, vmJailDir } from './jail.js';
import {
  cgroupName,
  controlSocket,
  INCOMING_FD,
  machineLimits,
  type OpenDisks,
  openDisks,
  qemuNetns,
  spawnQemu,
} from './spawn.js';
import { VmCgroups } from '../../host/cgroups.js';

/** The QEMU a host runs when nothing names another (HYPER_QEMU). */
export const DEFAULT_QEMU = 'qemu-system-x86_64';

/**
 * A bridge VM's network namespace must still be one: `ip netns` keeps it
 * mounted at its /run/netns file, in the mount namespace of the hyper that
 * made it, until the host reboots. Elsewhere the file is an empty one.
 */
async function requireNetns(file: string, name: string): Promise<void> {
  const [own, theirs] = await Promise.all([stat('/proc/self/ns/net'), stat(file).catch(() => undefined)]);
  if (theirs?.dev !== own.dev)
    throw new VmError(
      `cannot start ${name}: its network namespace ${file} is gone (a reboot, or a hyper in another mount namespace made it); remove the VM and run it again`,
      { kind: 'Conflict' },
    );
}

export class VmError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  override name = 'VmError';
}

/** What a TCG guest's TSC ticks at: the host's TSC, as QEMU's RDTSC reads the host's counter (see guestTscKhz). */
async function hostTscKhz(): Promise<number> {
  return guestTscKhz(await readCpuInfo(), process.arch).khz;
}

async function tail(file: string, lines = 20): Promise<string> {
  try {
    return trimOutput(await readFile(file, 'utf8'), lines);
  } catch {
    return '';
  }
}

async function serviceLogTail(file: string, lines = 20): Promise<string> {
  const bytes = await readFile(file).catch(() => Buffer.alloc(0));
  return trimOutput(logRecordsText(bytes), lines);
}

/** QEMU's microvm machine, started as a detached child that outlives this process. */
export class QemuHypervisor implements Hypervisor {
  /**
   * `qemu`: the qemu-system binary, a name on PATH or a path. `templates`:
   * where boot templates are kept; without it every VM boots in full.
   */
  constructor(
    readonly qemu: string = DEFAULT_QEMU,
    private readonly templates?: TemplateStore,
    /** False: QEMU runs without its jail (HYPER_JAIL=off; see jail.ts). */
    private readonly confine = true,
    /** Where the VMs' cgroups go (HYPER_CGROUP_PARENT). */
    private readonly cgroups = new VmCgroups(),
  ) {}

  canShareDirectories(): Promise<boolean> {
    return canShare();
  }

  templateSlots(spec: Pick<MachineSpec, 'shares' | 'disks'>): number | undefined {
    return fitsSlots(spec) ? DISK_SLOTS : undefined;
  }

  async start(spec: MachineSpec, options: StartOptions = {}): Promise<Started> {
    const paths = vmPaths(spec.dir);
    for (const socket of [paths.qmp, paths.agent, paths.relay]) {
      if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
        throw new VmError(
          `state directory path is too long for a unix socket (${socket}); set HYPER_STATE_DIR to a shorter path`,
          { kind: 'Invalid' },
        );
      }
    }
    // Before anything is touched (a checkpoint's disks, a template): the VM could not start.
    const network = spec.network;
    if (network?.kind === 'tap' && network.netns !== undefined) await requireNetns(network.netns, spec.name);
    if (options.checkpoint)
      return {
        pid: await this.restoreCheckpoint(spec, options.checkpoint, options.network),
        origin: 'checkpoint',
      };
    if (options.saved)
      return {
        pid: await this.resumeSaved(spec, options.saved, options.network),
        origin: 'service-template',
      };
    const mode = options.template ?? 'auto';
    const log = options.log ?? (() => undefined);
    if (mode !== 'off' && this.templates && spec.slots !== undefined && fitsSlots(spec)) {
      const cloned = await this.startClone(spec, spec.slots, mode === 'refresh', log);
      if (cloned !== undefined) return { pid: cloned, origin: 'boot-template' };
    }
    return { pid: (await this.launch(spec, { kind: 'boot' })).pid, origin: 'boot' };
  }

  /**
   * Starts the VM as a clone of its shape's boot template, made first when
   * needed: QEMU maps the template's RAM privately and loads its device
   * state, then the guest gets its clock, fresh entropy and its settings
   * on its control port. Undefined (with the reason logged) when that fails:
   * the caller boots in full.
   */
  private async startClone(
    spec: MachineSpec,
    slots: number,
    refresh: boolean,
    log: (line: string) => void,
  ): Promise<number | undefined> {
    const templates = this.templates;
    if (!templates) return undefined;
    let template: BootTemplate;
    try {
      const identity = await templateIdentity(
        this.qemu,
        { ...spec, slots },
        await hostTscKhz(),
        cpuIdentity(await readCpuInfo()),
      );
      template = await templates.obtain(identity, spec.bundle, { refresh, log });
    } catch (error: unknown) {
      log(`warning: ${spec.name}: no boot template, booting in full: ${(error as Error).message}`);
      return undefined;
    }
    try {
      const { pid, control } = await this.resumeFrom(spec, template);
      try {
        await sendCloneSettings(control, spec, CLONE_SETTINGS_TIMEOUT_MS);
      } finally {
        control?.destroy();
      }
      return pid;
    } catch (error: unknown) {
      log(
        `warning: ${spec.name}: the clone of boot template ${template.dir} failed, booting in full: ${(error as Error).message}`,
      );
      await this.killQemu(spec);
      const paths = vmPaths(spec.dir);
      await writeFile(paths.status, '');
      await rm(paths.pid, { force: true });
      return undefined;
    }
  }

  /**
   * Starts QEMU on saved state: `ram` mapped copy-on-write and `state` (saved
   * without the RAM) loaded, then the guest runs on. Returns the pid, and
   * hyper's end of the control connection when the VM has one (hasControlPort).
   */
  private async resumeFrom(
    spec: MachineSpec,
    saved: { ram: string; state: string },
  ): Promise<{ pid: number; control: Socket | undefined }> {
    const { version } = await knownQemuVersion(this.qemu);
    const launch = { kind: 'clone', ram: saved.ram, readOnlyOpen: qemuAtLeast(version, 8, 2) } as const;
    const started = await this.launch(spec, launch, saved.state);
    try {
      await this.withQmp(spec, async (qmp) => {
        await qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'x-ignore-shared', state: true }],
        });
        // hyper opened the state file and handed it over: QEMU opens no path for it.
        await qmp.execute('migrate-incoming', { uri: `fd:${INCOMING_FD}` });
        await waitForMigration(qmp, CLONE_LOAD_TIMEOUT_MS);
        // A capture of this VM must move its RAM, which it maps privately: the capability goes off again.
        await qmp.execute('migrate-set-capabilities', {
          capabilities: [{ capability: 'x-ignore-shared', state: false }],
        });
        // The state was saved stopped, and a loaded VM keeps the state it was saved in.
        await qmp.execute('cont');
      });
    } catch (error: unknown) {
      started.control?.destroy();
      throw error;
    }
    return started;
  }

  /**
   * Resumes a stopped VM from checkpoint `tag`: its writable disks go back to
   * their snapshots, its RAM file is mapped copy-on-write (so it can be
   * restored again), and the guest gets the host's clock and fresh entropy:
   * two restores of one checkpoint do not share RNG state.
   */
  private async restoreCheckpoint(spec: MachineSpec, tag: string, network?: GuestNetwork): Promise<number> {
    const saved = checkpointPaths(spec.dir, tag);
    for (const file of [saved.ram, saved.state]) {
      if (!(await exists(file)))
        throw new VmError(`checkpoint "${tag}" of ${spec.name} is incomplete: ${file} is missing`, {
          kind: 'NotFound',
        });
    }
    await Promise.all(writableDisks(spec).map((file) => qemuImg.applySnapshot(file, tag)));
    return this.resumeSaved(spec, saved, network);
  }

  /**
   * Resumes the VM from saved RAM and device state that match its disks as
   * they are, then gives the guest the host's clock, fresh entropy and, when
   * given, its network: on its control port (hasControlPort), where
   * hyper-resume reads on (MachineSpec.controlReader), else through the agent.
   */
  private async resumeSaved(
    spec: MachineSpec,
    saved: { ram: string; state: string },
    network?: GuestNetwork,
  ): Promise<number> {
    let started: { pid: number; control: Socket | undefined } | undefined;
    try {
      started = await this.resumeFrom(spec, saved);
      const { control } = started;
      if (control && spec.controlReader) {
        const frame = controlFrame(hostClockNs(), randomBytes(64), resumeFiles(network));
        await exchangeFrame(control, frame, CLONE_SETTINGS_TIMEOUT_MS, {
          who: 'the resumed guest',
          what: `its clock, fresh entropy${network ? ' and its network' : ''}`,
        });
      } else await this.resumeThroughAgent(spec, network);
    } catch (error: unknown) {
      await this.killQemu(spec);
      throw error;
    } finally {
      started?.control?.destroy();
    }
    return started.pid;
  }

  /** resumeSaved's guest side for a VM without a control port or its reader: one agent exec (resumeSyncArgv). */
  private async resumeThroughAgent(spec: MachineSpec, network?: GuestNetwork): Promise<void> {
    const lease = await agentPool.acquire(vmPaths(spec.dir).agent, CLONE_AGENT_TIMEOUT_MS);
    try {
      const [program, ...args] = resumeSyncArgv(hostClockNs(), network);
      const synced = await lease.agent.exec(program as string, args, CLONE_AGENT_TIMEOUT_MS, randomBytes(64));
      if (synced.exitCode !== 0)
        throw new VmError(
          `the resumed guest could not take fresh entropy${network ? ' and its network' : ''} (exit ${synced.exitCode}): ${synced.stderr.toString().trim()}`,
        );
    } finally {
      lease.release();
    }
  }

  /**
   * Starts QEMU for `launch` in the VM's jail and cgroup, and returns its pid
   * once it answers on QMP. `incoming`: a file of saved state it is handed
   * open (INCOMING_FD).
   */
  private async launch(
    spec: MachineSpec,
    launch: Launch,
    incoming?: string,
  ): Promise<{ pid: number; control: Socket | undefined }> {
    const paths = vmPaths(spec.dir);
    const network = spec.network;
    // A jailed QEMU cannot remove its pidfile as it ends; the last one's must not be taken for this one's.
    await rm(paths.pid, { force: true });
    const log = await open(paths.qemuLog, 'a');
    let state: FileHandle | undefined;
    let disks: OpenDisks | undefined;
    let child: ReturnType<typeof spawnQemu> | undefined;
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: Error | undefined;
    try {
      const jail = await vmJail(
        this.qemu,
        spec.dir,
        network?.kind === 'user' && network.guestForwards.length > 0 ? network.connect : undefined,
        this.confine,
      );
      const procs = this.confine ? await this.joinCgroup(cgroupName('vm', spec.dir), spec) : [];
      state = incoming === undefined ? undefined : await open(incoming, 'r');
      disks = await openDisks(spec);
      // Each shared directory's virtiofsd first: QEMU connects to their sockets as it starts.
      if (spec.shares?.length) await startShares(spec.dir, spec.shares);
      // Not -daemonize: under TCG with 512 MiB that hung at boot in trials; a detached child did not.
      const args = qemuArgs(spec, await hostTscKhz(), launch, jail, disks.fds);
      child = spawnQemu(this.qemu, args, {
        output: log.fd,
        netns: qemuNetns(spec, launch, jail),
        procs,
        detached: true,
        control: hasControlPort(spec, launch),
        disks,
        ...(state ? { incoming: state.fd } : {}),
      });
      child.on('error', (error) => (spawnError = error));
      child.on('exit', (code, signal) => (exited = { code, signal }));
      child.unref();
      const deadline = Date.now() + 15000;
      for (;;) {
        if (spawnError)
          throw new VmError(`cannot start ${this.qemu}: ${spawnError.message}`, {
            kind: 'Unavailable',
            cause: spawnError,
          });
        if (exited)
          throw new VmError(
            `QEMU exited at start (code ${exited.code ?? exited.signal}): ${await tail(paths.qemuLog)}`,
          );
        const pid = await readPid(paths.pid);
        if (pid !== undefined && (await this.qmpAnswers(paths.qmp)))
          return { pid, control: hasControlPort(spec, launch) ? controlSocket(child) : undefined };
        if (Date.now() > deadline) {
          await this.kill(spec);
          throw new VmError(`QEMU did not come up within 15 s: ${await tail(paths.qemuLog)}`);
        }
        await sleep(20);
      }
    } catch (error: unknown) {
      // A QEMU that never wrote its pidfile is not found by kill(): it is this child.
      if (child && !exited) child.kill('SIGKILL');
      child?.stdio?.[CONTROL_FD]?.destroy();
      await this.released(spec.dir);
      throw error;
    } finally {
      await log.close();
      await state?.close();
      await disks?.close();
    }
  }

  /**
   * The cgroup.procs files of the VM's cgroup `name`, made with its limits;
   * none where no cgroup can be made, which is said once per process.
   */
  private async joinCgroup(name: string, spec: MachineSpec): Promise<string[]> {
    await this.cgroups.sweep();
    const cgroup = await this.cgroups.make(name, machineLimits(spec));
    if ('procs' in cgroup) return cgroup.procs;
    if (!warnedNoCgroup) {
      warnedNoCgroup = true;
      process.stderr.write(
        `warning: the VMs' memory, pids and CPU are not bounded on this host: ${cgroup.reason}\n`,
      );
    }
    return [];
  }

  private async qmpAnswers(socket: string): Promise<boolean> {
    try {
      const qmp = await QmpClient.connect(socket, 1000);
      qmp.close();
      return true;
    } catch {
      return false;
    }
  }

  async waitUntilRunning(spec: MachineSpec, timeoutMs: number): Promise<void> {
    const paths = vmPaths(spec.dir);
    const deadline = Date.now() + timeoutMs;
    let last = 'nothing yet';
    for (;;) {
      const status = await readGuestStatus(paths.status);
      if (status.failure)
        throw new VmError(`guest init failed: ${status.failure}\n${await tail(paths.console)}`);
      // A service that ran and exited already is a normal outcome: a one-shot command.
      if (status.servicePid !== undefined) return;
      if (status.exitCode !== undefined) {
        throw new VmError(
          `service exited at once with code ${status.exitCode}\n${await serviceLogTail(paths.serviceLog)}`.trimEnd(),
        );
      }
      if (status.booted) last = 'guest booted, service not started';
      if (!(await this.isRunning(spec))) {
        throw new VmError(`VM stopped while booting (last seen: ${last})\n${await tail(paths.console)}`);
      }
      if (Date.now() > deadline) {
        throw new VmError(
          `VM did not start its service within ${timeoutMs} ms (last seen: ${last})\n${await tail(paths.console)}`,
        );
      }
      await sleep(25);
    }
  }

  async isRunning(spec: MachineSpec): Promise<boolean> {
    const pid = await readPid(vmPaths(spec.dir).pid);
    return pid !== undefined && (await isOurProcess(pid, spec.dir));
  }

  async exec(spec: MachineSpec, argv: string[], timeoutMs: number): Promise<ExecResult> {
    const [program, ...args] = argv;
    if (!program) throw new VmError('no command given', { kind: 'Invalid' });
    const lease = await agentPool.acquire(vmPaths(spec.dir).agent, 10000);
    try {
      return await lease.agent.exec(program, args, timeoutMs);
    } finally {
      lease.release();
    }
  }

  async execStream(
    spec: MachineSpec,
    argv: string[],
    options: {
      stdin?: AsyncIterable<Buffer> | undefined;
      timeoutMs: number;
      signal?: AbortSignal | undefined;
    },
  ): Promise<ExecStream> {
    if (argv.length === 0) throw new VmError('no command given', { kind: 'Invalid' });
    const lease = await agentPool.acquire(vmPaths(spec.dir).agent, 10000);
    const running = execStream(lease.agent, argv, options);
    void running.exitCode.finally(() => lease.release()).catch(() => undefined);
    return running;
  }

  async stop(spec: MachineSpec, graceMs: number): Promise<'graceful' | 'killed'> {
    const paths = vmPaths(spec.dir);
    const pid = await readPid(paths.pid);
    if (pid === undefined || !(await isOurProcess(pid, spec.dir))) {
      await this.released(spec.dir);
      return 'graceful';
    }
    // No grace: nothing is asked of the guest, whose service could otherwise exit on its stop signal first.
    if (graceMs <= 0) {
      await this.kill(spec);
      return 'killed';
    }
    const deadline = Date.now() + graceMs;
    try {
      const lease = await agentPool.acquire(paths.agent, Math.max(100, Math.min(graceMs, 3000)));
      try {
        await lease.agent.shutdown();
      } finally {
        lease.release();
      }
    } catch {
      // No agent: nothing graceful is possible; fall through to the deadline and kill.
    }
    if (await waitForExit(pid, spec.dir, Math.max(0, deadline - Date.now()))) {
      await this.released(spec.dir);
      return 'graceful';
    }
    await this.kill(spec);
    return 'killed';
  }

  async kill(spec: Pick<MachineSpec, 'dir'>): Promise<void> {
    await this.killQemu(spec);
    // virtiofsd ends when QEMU goes; whatever is left is stopped.
    await this.released(spec.dir);
  }

  /** What a VM whose QEMU has ended holds on the host: its shares' virtiofsd, its cgroup, its uid. */
  private async released(dir: string): Promise<void> {
    await stopShares(dir);
    await this.cgroups.remove(cgroupName('vm', dir));
    await releaseJail(vmJailDir(dir));
  }

  private async killQemu(spec: Pick<MachineSpec, 'dir'>): Promise<void> {
    const pid = await readPid(vmPaths(spec.dir).pid);
    if (pid === undefined || !(await isOurProcess(pid, spec.dir))) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    if (!(await waitForExit(pid, spec.dir, 10000)))
      throw new VmError(`QEMU process ${pid} did not exit after SIGKILL`);
  }

  private async withQmp<T>(spec: MachineSpec, use: (qmp: QmpClient) => Promise<T>): Promise<T> {
    const qmp = await QmpClient.connect(vmPaths(spec.dir).qmp, 5000);
    try {
      return await use(qmp);
    } finally {
      qmp.close();
    }
  }

  async snapshotDisks(
    spec: MachineSpec,
    serials: readonly string[],
    tag: string,
    freeze: { mountpoints: readonly string[]; timeoutMs: number },
  ): Promise<void> {
    const agentPath = vmPaths(spec.dir).agent;
    let lease: AgentLease;
    try {
      lease = await agentPool.acquire(agentPath, freeze.timeoutMs);
    } catch (error: unknown) {
      throw new VmError(
        `cannot freeze the guest's filesystems: ${(error as Error).message}; no snapshot was taken and nothing was frozen`,
        { cause: error },
      );
    }
    let thawed = false;
    try {
      await lease.agent.whileFrozen(freeze.mountpoints, freeze.timeoutMs, () =>
        this.withQmp(spec, (qmp) =>
          qmp.execute('transaction', {
            actions: serials.map((serial) => ({
              type: 'blockdev-snapshot-internal-sync',
              data: { device: nodeOf(serial), name: tag },
            })),
          }),
        ),
      );
      thawed = true;
    } finally {
      lease.release();
      // After a failure the filesystems may still be frozen: thaw again, and check
      // (a no-op when nothing is frozen). A request that timed out left no stale
      // answer behind: the agent resynchronised, or dropped the connection for a new one.
      if (!thawed) await this.thaw(agentPath, freeze.timeoutMs);
    }
  }

  private async thaw(agentPath: string, timeoutMs: number): Promise<void> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const lease = await agentPool.acquire(agentPath, timeoutMs);
        try {
          await lease.agent.execute('guest-fsfreeze-thaw', {}, timeoutMs);
          const status = await lease.agent.execute('guest-fsfreeze-status', {}, timeoutMs);
          if (status === 'thawed') return;
          lastError = new Error(`the agent reports the filesystems ${String(status)}`);
        } finally {
          lease.release();
        }
      } catch (error: unknown) {
        lastError = error;
      }
    }
    throw new VmError(
      `the guest's filesystems could not be thawed: ${(lastError as Error).message}; thaw them with "hyper exec" once the agent answers`,
      { cause: lastError },
    );
  }

  async saveCheckpoint(spec: MachineSpec, tag: string): Promise<void> {
    if (spec.slots === undefined)
      throw new VmError(
        `${spec.name} has more disks than a checkpoint can hold (${DISK_SLOTS} besides its root disk)`,
        { kind: 'Invalid' },
      );
    await captureCheckpoint(
      this.qemu,
      spec,
      tag,
      await hostTscKhz(),
      CHECKPOINT_TIMEOUT_MS,
      this.confine,
      this.cgroups,
    );
  }

  async deleteSnapshot(spec: MachineSpec, serials: readonly string[], tag: string): Promise<void> {
    // A VM restored from it maps the RAM file privately: its pages stay with it.
    await rm(checkpointPaths(spec.dir, tag).dir, { recursive: true, force: true });
    if (await this.isRunning(spec)) {
      await this.withQmp(spec, (qmp) => deleteDiskSnapshots(qmp, serials.map(nodeOf), tag));
      return;
    }
    for (const serial of serials) {
      const file = diskFile(spec, serial);
      if ((await qemuImg.snapshotNames(file, { forceShare: true })).includes(tag))
        await qemuImg.deleteSnapshot(file, tag);
    }
  }

  relayStreams(spec: MachineSpec, connect: () => Duplex, signal: AbortSignal): Promise<void> {
    return relayStreams(vmPaths(spec.dir).relay, connect, signal);
  }

  async pause(spec: MachineSpec): Promise<void> {
    // QEMU drains and flushes every block device when the VM stops.
    await this.withQmp(spec, (qmp) => qmp.execute('stop'));
  }

  async resume(spec: MachineSpec): Promise<void> {
    await this.withQmp(spec, (qmp) => qmp.execute('cont'));
  }

  async revertDisks(spec: MachineSpec, serials: readonly string[], tag: string): Promise<void> {
    if (await this.isRunning(spec))
      throw new VmError(`${spec.name} is running; stop it before reverting its disks`, { kind: 'Conflict' });
    for (const serial of serials) await qemuImg.applySnapshot(diskFile(spec, serial), tag);
  }
}

/** Whether this process has said that VMs get no cgroup here. */
let warnedNoCgroup = false;

/** Loading a template's device state reads some 200 KB; the RAM is mapped, not read. */
const CLONE_LOAD_TIMEOUT_MS = 30_000;
/** A resumed guest's agent answers once its vCPU runs again; a loaded host can delay that. */
const CLONE_AGENT_TIMEOUT_MS = 30_000;
/** A clone answers its settings once its vCPU runs again; a loaded host can delay that. */
const CLONE_SETTINGS_TIMEOUT_MS = 30_000;

/** A checkpoint writes the guest's RAM; on a slow disk that can take a while. */
const CHECKPOINT_TIMEOUT_MS = 120_000;

function nodeOf(serial: string): string {
  return serial === 'rootfs' ? ROOT_NODE : diskNode(serial);
}

/** The files of the disks a checkpoint holds a snapshot of (checkpoint.ts writableNodes). */
function writableDisks(spec: MachineSpec): string[] {
  return [spec.rootDisk, ...(spec.disks ?? []).filter((d) => !d.readOnly).map((d) => d.path)];
}

function diskFile(spec: MachineSpec, serial: string): string {
  if (serial === 'rootfs') return spec.rootDisk;
  const disk = spec.disks?.find((d) => d.serial === serial);
  if (!disk) throw new VmError(`${spec.name} has no disk ${serial}`, { kind: 'NotFound' });
  return disk.path;
}

/**
 * What a booted guest reads from fw_cfg, a clone gets on its hyper.control
 * port, where its init waits in hyper-resume (guest/hyper-resume.c): the
 * host's time, fresh entropy and the VM's settings in one frame, then one
 * answer line. No agent round trip and nothing forked in the guest before
 * the clone has its own clock and RNG state.
 */
async function sendCloneSettings(
  control: Socket | undefined,
  spec: MachineSpec,
  timeoutMs: number,
): Promise<void> {
  if (!control) throw new VmError('the clone has no control connection');
  const files = await Promise.all(
    spec.guestFiles.map(async (file) => ({ name: file.name, content: await readFile(file.path) })),
  );
  // The clock is taken here, as the frame is written.
  const frame = controlFrame(hostClockNs(), randomBytes(64), files);
  await exchangeFrame(control, frame, timeoutMs, { who: 'the clone', what: 'its settings' });
}

/**
 * Writes `frame` on the control connection and waits for hyper-resume's
 * answer line; throws what the guest said when it refused the frame.
 * `who` and `what` name the guest and what it is given, for the errors.
 */
async function exchangeFrame(
  control: Socket,
  frame: Buffer,
  timeoutMs: number,
  names: { who: string; what: string },
): Promise<void> {
  const { who, what } = names;
  if (control.destroyed || control.readableEnded)
    throw new VmError(`QEMU closed the control connection of ${who}`);
  const answer = new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(
      () => reject(new VmError(`${who} did not take ${what} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const done = (error?: Error): void => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(text);
    };
    control.setEncoding('utf8');
    control.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) done();
    });
    control.on('error', (error) =>
      done(new VmError(`the control connection of ${who} failed: ${error.message}`)),
    );
    control.once('close', () =>
      done(
        new VmError(`QEMU closed the control connection of ${who}${text ? ` after "${text.trim()}"` : ''}`),
      ),
    );
  });
  control.write(frame);
  const problem = controlAnswerProblem((await answer).split('\n')[0] ?? '');
  if (problem) throw new VmError(`${who} could not take ${what}: ${problem}`);
}
