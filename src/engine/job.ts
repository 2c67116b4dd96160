import type { Duplex } from 'node:stream';
import type { ContainerSpec } from '../spec/container.js';
import { QemuHypervisor } from '../vm/qemu/machine.js';
import { VmCgroups } from '../host/cgroups.js';
import { bootTemplateDir, mappedFiles, TemplateStore, type TemplateInfo } from '../vm/qemu/template.js';
import {
  listServiceTemplates,
  pruneServiceTemplates,
  type ServiceTemplateInfo,
} from './service-templates.js';
import { DamagedStateError } from '../files.js';
import { resolveImage } from '../images/resolve.js';
import * as jobNetwork from '../network/job.js';
import { keepForDebugging, type KeepMode } from './keep.js';
import { findImage, imageConfig, listImages, pruneImages, pullImage, removeImage } from './images.js';
import type { CatalogEntry } from '../images/catalog.js';
import type { LogRecord } from '../vm/log-records.js';
import {
  killContainer,
  listContainers,
  removeContainer,
  startContainer,
  stopContainer,
  waitContainer,
  type ServiceSummary,
  type StoppedState,
} from './container.js';
import type { BootContext, JobContext, JobParts, NetworkDriver } from './context.js';
import { downJob, type DownHooks, type DownOptions } from './down.js';
import { prepareHost, type ReleaseSource, type Reporter } from './host.js';
import { listVmNames, resolveVm, type VmRecord } from './record.js';
import { runContainer, type RunOptions } from './run.js';
import {
  forgetJobSettings,
  mergeJobSettings,
  readJobSettings,
  writeJobSettings,
  type HostSettings,
  type JobSettings,
} from './settings.js';
import { listSnapshots, removeSnapshot, restoreService, snapshotService } from './snapshots.js';
import { containerLogs, execStreamInContainer, logText, openServiceLog, type ServiceLog } from './streams.js';
import { exportSnapshot } from './export.js';
import { importSnapshot, type ImportOptions } from './import.js';
import { checkStillRunning, upServices, type ServiceStatus, type UpOptions } from './up.js';
import { createVolume, listVolumes, removeVolume } from './volumes.js';
import { readArchive, statPath, writeArchive } from './archive.js';
import {
  connectNamedNetwork,
  createNamedNetwork,
  disconnectNamedNetwork,
  listNamedNetworks,
  networkMembers,
  removeNamedNetwork,
  requireNamedNetwork,
  type NamedNetwork,
} from './networks.js';
import { monitorHealth, readHealth, type HealthState } from './health-monitor.js';
import { requireRecord, vmState, type VmState } from './container.js';
import { balanceService, forgetBalancer, markBalancerReady } from './balancer.js';

/**
 * One job: a state dir with its VMs, volumes, network and settings. Every
 * front door (the action, the CLI, later the Docker API) opens one and calls
 * its operations; containers are named as Docker names them.
 */
export class Job {
  private boot: BootContext | undefined;

  private constructor(
    readonly context: JobContext,
    /** The job's settings as begin() keeps them, for the doors that open the job later; undefined when nothing was given. */
    private readonly toKeep: JobSettings | undefined,
    /** The host's boot templates: the ones the QEMU hypervisor clones from. */
    private readonly templateStore: TemplateStore,
    /** What a door should show the user about how the job was opened (a damaged job.json). */
    readonly warnings: readonly string[] = [],
  ) {}

  /**
   * Opens the job in `host.stateDir`. Settings given here win over those the
   * job saved, which win over the defaults; what is given is saved for the
   * doors that open the job later.
   */
  static async open(
    host: HostSettings,
    given: Partial<JobSettings> = {},
    replaced: Partial<JobParts> = {},
  ): Promise<Job> {
    const cgroups = new VmCgroups(host.cgroupParent);
    const templates = new TemplateStore(bootTemplateDir(host.cacheDir), host.qemu, host.jail, cgroups);
    const parts: JobParts = {
      hypervisor: replaced.hypervisor ?? new QemuHypervisor(host.qemu, templates, host.jail, cgroups),
      resolveImage: replaced.resolveImage ?? resolveImage,
      network: replaced.network ?? jobNetwork,
    };
    // Saved settings belong to a job that has state; an empty state dir starts a new job.
    let saved: Partial<JobSettings> | undefined;
    const warnings: string[] = [];
    try {
      saved = (await hasState(host.stateDir, parts.network))
        ? await readJobSettings(host.stateDir)
        : undefined;
    } catch (error: unknown) {
      // Teardown and inspection must work whatever the file says: the defaults stand in, with a warning.
      if (!(error instanceof DamagedStateError)) throw error;
      warnings.push(`${error.message}; using the default settings`);
    }
    const settings = mergeJobSettings(saved, given);
    // The packet filter is the host's choice, not the job's: never saved, always applied.
    const network = host.firewall ? { ...settings.network, firewall: host.firewall } : settings.network;
    return new Job(
      {
        ...parts,
        stateDir: host.stateDir,
        cacheDir: host.cacheDir,
        host,
        settings: { ...settings, network },
      },
      Object.values(given).some((value) => value !== undefined) ? settings : undefined,
      templates,
      warnings,
    );
  }

  /**
   * Before a door makes anything: refuses what can be refused before any
   * image is pulled (bridge without root, for one), then keeps the settings
   * this door gave for the doors that open the job later.
   */
  async begin(): Promise<void> {
    await this.context.network.preflightNetwork(this.context.stateDir, this.settings.network);
    if (this.toKeep) await writeJobSettings(this.context.stateDir, this.toKeep);
  }

  /** Once the job has no VM and no network left, its settings go too. */
  private async forgetIfEmpty(): Promise<void> {
    if (!(await hasState(this.context.stateDir, this.context.network)))
      await forgetJobSettings(this.context.stateDir);
  }

  pull(
    name: string,
    log: (line: string) => void,
    credentials?: { username: string; password: string },
  ): ReturnType<typeof pullImage> {
    return pullImage(name, this.context, log, credentials);
  }

  findImage(ref: string): ReturnType<typeof findImage> {
    return findImage(this.context, ref);
  }

  imageConfig(entry: CatalogEntry): ReturnType<typeof imageConfig> {
    return imageConfig(this.context, entry);
  }

  removeImage(ref: string, force: boolean): ReturnType<typeof removeImage> {
    return removeImage(this.context, ref, force);
  }

  images(): ReturnType<typeof listImages> {
    return listImages(this.context);
  }

  /** The host's boot templates and service templates (in the cache dir), with the VMs using each. */
  async templates(): Promise<{ boot: TemplateInfo[]; service: ServiceTemplateInfo[] }> {
    return {
      boot: await this.templateStore.list(),
      service: await listServiceTemplates(this.context.cacheDir, await mappedFiles()),
    };
  }

  /** Removes the boot and service templates no running VM maps; returns their directories. */
  async pruneTemplates(): Promise<string[]> {
    return [
      ...(await this.templateStore.prune()),
      ...(await pruneServiceTemplates(this.context.cacheDir, await mappedFiles())),
    ];
  }

  pruneImages(all: boolean): ReturnType<typeof pruneImages> {
    return pruneImages(this.context, all);
  }

  get settings(): JobSettings {
    return this.context.settings;
  }

  /** Installs the tools, gets the guest bundle and decides the accelerator, once; what making VMs needs. */
  async prepare(reporter: Reporter, release: ReleaseSource = {}): Promise<BootContext> {
    this.boot ??= await this.creating(() => prepareHost(this.context, reporter, release));
    return this.boot;
  }

  private booted(): BootContext {
    if (!this.boot) throw new Error('the job must be prepared before it makes VMs');
    return this.boot;
  }

  run(spec: ContainerSpec, options: RunOptions = {}): Promise<VmRecord> {
    return this.creating(() => runContainer(spec, this.booted(), options));
  }

  /** Makes the VM without booting it (docker create); `start` boots it. */
  create(spec: ContainerSpec, options: Omit<RunOptions, 'createOnly'> = {}): Promise<VmRecord> {
    return this.creating(() => runContainer(spec, this.booted(), { ...options, createOnly: true }));
  }

  up(
    waves: readonly (readonly ContainerSpec[])[],
    options: UpOptions,
    reporter: Reporter,
  ): Promise<ServiceStatus[]> {
    return this.creating(() => upServices(waves, this.booted(), options, reporter));
  }

  /** A create that fails leaves the job as it found it: its settings too, when it made the job. */
  private async creating<T>(create: () => Promise<T>): Promise<T> {
    try {
      return await create();
    } catch (error: unknown) {
      await this.forgetIfEmpty().catch(() => undefined);
      throw error;
    }
  }

  /** Fails, naming the service and its exit code, when any of `services` is no longer running. */
  checkStillRunning(services: readonly { name: string }[]): Promise<void> {
    return checkStillRunning(services, this.context);
  }

  async down(options: DownOptions, hooks: DownHooks): Promise<void> {
    await downJob(this.context, options, hooks);
    await this.forgetIfEmpty();
  }

  async start(ref: string): Promise<VmRecord> {
    return startContainer(await this.nameOf(ref), this.context);
  }

  async stop(ref: string, graceMs: number | undefined): Promise<number | undefined> {
    return stopContainer(await this.nameOf(ref), graceMs, this.context);
  }

  async kill(ref: string): Promise<number | undefined> {
    return killContainer(await this.nameOf(ref), this.context);
  }

  async wait(ref: string): Promise<StoppedState> {
    return waitContainer(await this.nameOf(ref), this.context);
  }

  async remove(ref: string, force: boolean): Promise<void> {
    await removeContainer(await this.nameOf(ref), force, this.context);
    await this.forgetIfEmpty();
  }

  /** Every VM, or those whose labels hold every `labels` entry (a label given without a value: any value). */
  async list(
    filter: { labels?: Readonly<Record<string, string | undefined>> } = {},
  ): Promise<ServiceSummary[]> {
    const wanted = Object.entries(filter.labels ?? {});
    return (await listContainers(this.context)).filter(({ record }) =>
      wanted.every(
        ([key, value]) => key in record.labels && (value === undefined || record.labels[key] === value),
      ),
    );
  }

  async execStream(
    ref: string,
    command: string[],
    options: Parameters<typeof execStreamInContainer>[3] = {},
  ): ReturnType<typeof execStreamInContainer> {
    return execStreamInContainer(await this.nameOf(ref), command, this.context, options);
  }

  async *logs(
    ref: string,
    options: { follow?: boolean; signal?: AbortSignal | undefined } = {},
  ): AsyncGenerator<LogRecord> {
    yield* containerLogs(await this.nameOf(ref), this.context, options);
  }

  /** A reader of the service's log that gives what is there, then follows on from the same place. */
  async openLog(ref: string): Promise<ServiceLog> {
    return openServiceLog(await this.nameOf(ref), this.context);
  }

  async logText(ref: string): Promise<string> {
    return logText(await this.nameOf(ref), this.context);
  }

  async snapshot(
    service: string,
    name: string | undefined,
    options: { checkpoint: boolean; freezeTimeoutMs: number },
  ): ReturnType<typeof snapshotService> {
    return snapshotService(await this.nameOf(service), name, options, this.context);
  }

  async restore(service: string, name: string, stopGraceMs: number): Promise<number> {
    return restoreService(await this.nameOf(service), name, this.context, { stopGraceMs });
  }

  async snapshots(service: string | undefined): ReturnType<typeof listSnapshots> {
    return listSnapshots(service === undefined ? undefined : await this.nameOf(service), this.context);
  }

  async removeSnapshot(service: string, name: string): Promise<void> {
    return removeSnapshot(await this.nameOf(service), name, this.context);
  }

  async export(service: string, name: string, file: string): Promise<number> {
    return exportSnapshot(await this.nameOf(service), name, file, this.context);
  }

  import(file: string, options: ImportOptions): ReturnType<typeof importSnapshot> {
    return this.creating(() => importSnapshot(file, options, this.booted()));
  }

  /** Copies what a VM leaves for debugging (logs, and its volumes or a checkpoint) into `dir`; returns what was kept. */
  async keepForDebugging(ref: string, mode: KeepMode, dir: string): Promise<string[]> {
    return keepForDebugging(await this.nameOf(ref), mode, dir, this.context);
  }

  /** The VM's name for a reference: a name, or a unique prefix of an id, as Docker takes them; else `ref` itself. */
  private async nameOf(ref: string): Promise<string> {
    return (await resolveVm(this.context, ref)) ?? ref;
  }

  /** A VM's address on the job network (what inspect shows), once it is on it. */
  async address(ref: string): Promise<{ ip: string; prefix: number; gateway: string } | undefined> {
    const name = await this.nameOf(ref);
    const network = await this.context.network.readNetwork(this.context.stateDir);
    if (!network?.members.some((member) => member.service === name)) return undefined;
    const { guest } = this.context.network.memberView(network, name, '');
    return { ip: guest.ip, prefix: guest.prefix, gateway: guest.gateway };
  }

  /** The job network's mode, once there is one. */
  async networkMode(): Promise<string | undefined> {
    return (await this.context.network.readNetwork(this.context.stateDir))?.mode;
  }

  volumes(): ReturnType<typeof listVolumes> {
    return listVolumes(this.context);
  }

  removeVolume(name: string): Promise<void> {
    return removeVolume(this.context, name);
  }

  /** Makes a named volume before any VM mounts it (docker volume create); false when it was there already. */
  createVolume(name: string): Promise<boolean> {
    return createVolume(this.context, name);
  }

  async statPath(ref: string, target: string): ReturnType<typeof statPath> {
    return statPath(await this.nameOf(ref), target, this.context);
  }

  async readArchive(ref: string, target: string, signal?: AbortSignal): ReturnType<typeof readArchive> {
    return readArchive(await this.nameOf(ref), target, this.context, signal);
  }

  async writeArchive(ref: string, target: string, tar: AsyncIterable<Buffer>): Promise<void> {
    return writeArchive(await this.nameOf(ref), target, tar, this.context);
  }

  /** One VM's record, state and health (docker inspect). */
  async inspect(ref: string): Promise<{ record: VmRecord; state: VmState; health: HealthState | undefined }> {
    const record = await requireRecord(this.context, await this.nameOf(ref));
    return { record, state: await vmState(record, this.context), health: await readHealth(record) };
  }

  /** Runs the VM's healthcheck while it runs, keeping the health inspect shows, until `signal` aborts. */
  async monitorHealth(ref: string, signal: AbortSignal): Promise<void> {
    await monitorHealth(await requireRecord(this.context, await this.nameOf(ref)), this.context, signal);
  }

  /**
   * Joins the connections made to the VM's relayed sockets (ContainerSpec
   * apiSockets) each to a fresh `connect()`, until `signal` aborts; nothing
   * to do for a VM without them.
   */
  async relayApi(ref: string, connect: () => Duplex, signal: AbortSignal): Promise<void> {
    const record = await requireRecord(this.context, await this.nameOf(ref));
    if (!record.machine.relaySockets?.length) return;
    await this.context.hypervisor.relayStreams(record.machine, connect, signal);
  }

  /**
   * Runs the balancer of a service with replicas in this process (what
   * `hyper up` starts detached) until `signal` aborts or no replica is left.
   */
  async balance(service: string, signal: AbortSignal, log: (line: string) => void): Promise<void> {
    try {
      await balanceService(service, this.context, signal, log, () =>
        markBalancerReady(this.context, service),
      );
    } finally {
      await forgetBalancer(this.context, service);
    }
  }

  networks(): Promise<NamedNetwork[]> {
    return listNamedNetworks(this.context);
  }

  network(ref: string): Promise<NamedNetwork> {
    return requireNamedNetwork(this.context, ref);
  }

  networkMembers(name: string): Promise<VmRecord[]> {
    return networkMembers(this.context, name);
  }

  createNetwork(name: string, labels: Record<string, string>): Promise<NamedNetwork> {
    return createNamedNetwork(this.context, name, labels);
  }

  removeNetwork(ref: string): Promise<void> {
    return removeNamedNetwork(this.context, ref);
  }

  async connect(networkRef: string, ref: string, aliases: readonly string[]): Promise<void> {
    const network = await requireNamedNetwork(this.context, networkRef);
    const record = await requireRecord(this.context, await this.nameOf(ref));
    await connectNamedNetwork(this.context, record, network, aliases);
  }

  async disconnect(networkRef: string, ref: string): Promise<void> {
    const network = await requireNamedNetwork(this.context, networkRef);
    await disconnectNamedNetwork(await requireRecord(this.context, await this.nameOf(ref)), network);
  }
}

/** Whether the job in `stateDir` has a VM or a network (a damaged network record counts). */
async function hasState(stateDir: string, network: NetworkDriver): Promise<boolean> {
  if ((await listVmNames({ stateDir })).length > 0) return true;
  return (await network.readNetwork(stateDir).catch(() => true)) !== undefined;
}
