import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execArgv, guestFiles, mergeEnv, networkSyncArgv, serviceArgv } from '../guest/config.js';
import type { LocalImage } from '../images/image.js';
import { resolveImage, type ResolveOptions } from '../images/resolve.js';
import { ensureRootfs } from '../images/rootfs.js';
import { imageRunConfig } from '../images/run-config.js';
import { checkUserSpec } from '../images/users.js';
import { leaveNetwork, memberOf, memberView, type NetworkRecord } from '../network/job.js';
import type { PortSpec, PublishedPort } from '../network/ports.js';
import { DEFAULT_NETWORK, type NetworkSettings } from '../network/settings.js';
import { qemuImg } from '../tools/qemu/img.js';
import type { ExecResult, MachineNetwork, MachineSpec } from '../vm/hypervisor.js';
import { vmPaths } from '../vm/paths.js';
import { sleep } from '../vm/process.js';
import { guestMountTable, planMounts, type MountDisk } from '../storage/mounts.js';
import { checkMountSources, prepareMountDisks } from '../storage/volumes.js';
import { crashExcerpt, crashReason, readConsoleTail, readGuestStatus } from '../vm/status.js';
import { DamagedStateError, exists } from '../files.js';
import { cacheDir, stateDir, vmDir } from './dirs.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { HostContext } from './host.js';
import { listRecords, listVmNames, readRecord, writeRecord, type VmRecord } from './record.js';

export class ServiceError extends Error {
  override name = 'ServiceError';
}

export interface RunRequest {
  name?: string | undefined;
  image: string;
  ports: PortSpec[];
  /** K=V entries from the user; they override the image's Env. */
  env: string[];
  memoryMiB: number;
  cpus: number;
  entrypoint?: string[] | undefined;
  command: string[];
  /** USER[:GROUP] (names or numbers); the image's User when absent. */
  user?: string | undefined;
  /** The image's WorkingDir when absent. */
  workdir?: string | undefined;
  /** Replaces the image's HEALTHCHECK; 'none' disables it. */
  healthcheck?: HealthcheckSpec | 'none' | undefined;
  labels?: Record<string, string>;
  /** How long the guest may take to start its service. */
  bootTimeoutMs: number;
  registry?: RegistrySettings;
  /** Docker short syntax: NAME:/path, /host:/path, ./rel:/path, /path; with :ro. */
  volumes?: string[];
  /** Bytes for each new volume without a size of its own; HYPER_VOLUME_SIZE, else 10 GiB, when absent. */
  volumeSize?: number | undefined;
  /** Bytes for named volumes that set their own size, by name; only used when a volume is made. */
  volumeSizes?: Record<string, number> | undefined;
  /** /path[:options] */
  tmpfs?: string[];
  /** What relative host paths in `volumes` are relative to (the working directory by default). */
  baseDir?: string;
  /** `image` as already resolved (hyper up pulls every image before planning the network); pulled here when absent. */
  resolved?: LocalImage | undefined;
  /** How to make the job network if this is its first VM (auto, egress allowed, by default). */
  network?: NetworkSettings;
  /** Further names the other services reach this one by. */
  aliases?: string[];
  /** Container ports the other services may reach, besides the image's EXPOSE and the published ones. */
  expose?: number[];
}

/** How images are pulled: credentials, a Docker Hub mirror, registries reached over plain HTTP. */
export type RegistrySettings = Omit<ResolveOptions, 'cacheDir' | 'log'>;

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

export function validateName(name: string): void {
  if (!NAME.test(name)) {
    throw new ServiceError(
      `"${name}" is not a valid name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)`,
    );
  }
}

/** `oci:/x/busybox-httpd:latest` -> `busybox-httpd-3f9a`. */
export function generateName(image: string): string {
  const base =
    image
      .replace(/^oci:/, '')
      .replace(/[:@].*$/, '')
      .split('/')
      .filter(Boolean)
      .pop() ?? 'vm';
  const clean =
    base
      .replace(/[^a-zA-Z0-9_.-]/g, '-')
      .replace(/^[^a-zA-Z0-9]+/, '')
      .slice(0, 50) || 'vm';
  return `${clean}-${randomBytes(2).toString('hex')}`;
}

/** A named volume is one ext4: it can be attached to one running VM at a time. */
async function checkVolumesFree(
  volumes: readonly string[],
  host: Pick<HostContext, 'hypervisor'>,
  self?: string,
): Promise<void> {
  const wanted = new Set(volumes);
  if (wanted.size === 0) return;
  for (const record of await listRecords()) {
    if (record.name === self) continue;
    const shared = record.disks?.find((d) => d.volume !== undefined && wanted.has(d.volume));
    if (shared && (await host.hypervisor.isRunning(record.machine))) {
      throw new ServiceError(
        `volume ${shared.volume} is in use by ${record.name}; a volume can be attached to one running VM at a time`,
      );
    }
  }
}

/**
 * Boots one service VM: everything that can be checked is checked before the
 * first side effect; once the VM's directory is claimed, any failure kills the
 * VM and removes the directory.
 */
export async function runService(
  request: RunRequest,
  host: HostContext,
  log: (line: string) => void,
): Promise<VmRecord> {
  const name = request.name ?? generateName(request.image);
  validateName(name);
  const dir = vmDir(name);
  if (await exists(dir)) {
    throw new ServiceError(
      `the name "${name}" is already in use by a VM; remove it with "hyper rm ${name}" or choose another --name`,
    );
  }
  if (!Number.isInteger(request.memoryMiB) || request.memoryMiB < 64) {
    throw new ServiceError(`memory ${request.memoryMiB} MiB is too small; give at least 64`);
  }
  if (!Number.isInteger(request.cpus) || request.cpus < 1)
    throw new ServiceError(`cpus must be a whole number of at least 1`);

  // Mounts are checked before any pull; the image's VOLUMEs join in once it is known.
  const baseDir = request.baseDir ?? process.cwd();
  const userMounts = planMounts(request.volumes ?? [], request.tmpfs ?? [], [], baseDir);
  await checkMountSources(userMounts);
  await checkVolumesFree(
    userMounts.flatMap((m) => (m.kind === 'volume' ? [m.name] : [])),
    host,
  );
  const image =
    request.resolved ??
    (await resolveImage(request.image, { ...request.registry, cacheDir: cacheDir(), log }));
  const runConfig = imageRunConfig(image.config);
  const argv = serviceArgv(
    runConfig,
    { entrypoint: request.entrypoint, command: request.command },
    request.image,
  );
  const guest = {
    hostname: name,
    argv,
    env: mergeEnv(runConfig.env, request.env, name),
    user: request.user ?? runConfig.user,
    workdir: request.workdir ?? runConfig.workingDir,
    stopSignal: runConfig.stopSignal,
  };
  const mounts = planMounts(request.volumes ?? [], request.tmpfs ?? [], runConfig.volumes, baseDir);
  const base = await ensureRootfs(image, cacheDir());
  log(`${base.cached ? 'Reusing' : 'Built'} root filesystem ${path.basename(base.path)}`);
  await checkUserSpec(base.path, guest.user, request.image);

  // The service is on the job network from here; any failure takes it off again.
  const { network } = await memberOf(
    stateDir(),
    request.network ?? DEFAULT_NETWORK,
    {
      service: name,
      aliases: request.aliases ?? [],
      containerPorts: tcpPorts(request.ports, request.expose, runConfig.exposedPorts),
      published: request.ports,
    },
    { info: log, warn: (line) => log(`warning: ${line}`) },
  );
  try {
    return await createVm(name, request, host, { image, runConfig, guest, mounts, base: base.path, network });
  } catch (error: unknown) {
    await leaveNetwork(stateDir(), [name]).catch(() => undefined);
    throw error;
  }
}

/** The container ports other services may reach: published, expose:, and the image's EXPOSE (TCP only). Pure. */
export function tcpPorts(
  published: readonly PortSpec[],
  expose: readonly number[] | undefined,
  exposed: readonly string[],
): number[] {
  const fromImage = exposed.flatMap((entry) => {
    const [port, protocol = 'tcp'] = entry.split('/');
    return protocol === 'tcp' && /^\d+$/.test(port ?? '') ? [Number(port)] : [];
  });
  const ports = [
    ...published.filter((p) => p.protocol === 'tcp').map((p) => p.containerPort),
    ...(expose ?? []),
    ...fromImage,
  ];
  return [...new Set(ports)].sort((a, b) => a - b);
}

async function createVm(
  name: string,
  request: RunRequest,
  host: HostContext,
  vm: {
    image: LocalImage;
    runConfig: ReturnType<typeof imageRunConfig>;
    guest: Omit<Parameters<typeof guestFiles>[0], 'network'>;
    mounts: ReturnType<typeof planMounts>;
    base: string;
    network: NetworkRecord;
  },
): Promise<VmRecord> {
  const { image, runConfig, mounts } = vm;
  const dir = vmDir(name);
  const view = memberView(vm.network, name, host.bundle.connect);
  const ports = view.published;
  const guest = { ...vm.guest, network: view.guest };
  await mkdir(path.dirname(dir), { recursive: true });
  try {
    await mkdir(dir);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new ServiceError(`the name "${name}" is already in use by a VM`);
    throw error;
  }
  const paths = vmPaths(dir);
  let disks: MountDisk[];
  try {
    disks = await prepareMountDisks(stateDir(), mounts, dir, {
      defaultBytes: request.volumeSize,
      named: request.volumeSizes,
    });
  } catch (error: unknown) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const files = guestFiles({ ...guest, mounts: guestMountTable(disks, mounts) });
  const machine = machineSpec(name, host, {
    memoryMiB: request.memoryMiB,
    cpus: request.cpus,
    guestFiles: files.map((f) => ({ name: f.name, path: path.join(paths.guestFiles, f.name) })),
    forwards: view.forwards,
    network: view.machine,
    disks,
  });
  const record: VmRecord = {
    name,
    image: request.image,
    imageDigest: image.manifestDigest,
    imageConfigDigest: image.configDigest,
    imageBlobs: [image.configDigest, ...image.layers.map((layer) => layer.digest)],
    createdAt: new Date().toISOString(),
    machine,
    ports,
    user: guest.user,
    workdir: guest.workdir,
    labels: request.labels ?? {},
    disks,
  };
  const healthcheck = request.healthcheck ?? runConfig.healthcheck;
  if (healthcheck && healthcheck !== 'none') record.healthcheck = healthcheck;
  try {
    await mkdir(paths.guestFiles);
    for (const file of files) await writeFile(path.join(paths.guestFiles, file.name), file.content);
    await qemuImg.createOverlay(paths.rootDisk, vm.base, 'raw');
    await writeRecord(record);
    const started = Date.now();
    await host.hypervisor.start(machine);
    await host.hypervisor.waitUntilRunning(machine, request.bootTimeoutMs);
    record.bootMs = Date.now() - started;
    await writeRecord(record);
    return record;
  } catch (error: unknown) {
    await host.hypervisor.kill(machine).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The hypervisor's view of a service VM in `vmDir(name)`, on this host's bundle and accelerator. */
export function machineSpec(
  name: string,
  host: Pick<HostContext, 'bundle' | 'accel'>,
  vm: {
    memoryMiB: number;
    cpus: number;
    guestFiles: MachineSpec['guestFiles'];
    /** Host ports QEMU itself forwards (user networking): published, and loopback ones for the other services. */
    forwards: readonly PublishedPort[];
    network: MachineNetwork;
    disks: readonly MountDisk[];
  },
): MachineSpec {
  const dir = vmDir(name);
  return {
    name,
    dir,
    accel: host.accel,
    memoryMiB: vm.memoryMiB,
    cpus: vm.cpus,
    bundle: host.bundle,
    rootDisk: vmPaths(dir).rootDisk,
    guestFiles: vm.guestFiles,
    network: vm.network,
    ports: vm.forwards.map((p) => ({
      protocol: p.protocol,
      hostIp: p.hostIp,
      hostPort: p.hostPort,
      guestPort: p.containerPort,
    })),
    disks: vm.disks.map((d) => ({ serial: d.serial, path: d.path, readOnly: d.readOnly })),
  };
}

export type VmState =
  | { running: true }
  | {
      running: false;
      exitCode: number | undefined;
      /** Why the guest died when its init could not say, e.g. "kernel panic: ...". */
      crash?: string;
      /** The end of the guest's console, when it crashed. */
      consoleTail?: string;
    };

/** "running", "exited (3)", "exited (kernel panic)". Pure. */
export function stateText(state: VmState): string {
  if (state.running) return 'running';
  if (state.crash) return `exited (${state.crash.split(':')[0]})`;
  return `exited (${state.exitCode ?? '?'})`;
}

/**
 * Running means QEMU is alive and the guest has not reported its service's
 * exit: between that report and the power-off, QEMU still runs, but the
 * service is gone.
 */
export async function vmState(record: VmRecord, host: Pick<HostContext, 'hypervisor'>): Promise<VmState> {
  const paths = vmPaths(record.machine.dir);
  const status = await readGuestStatus(paths.status);
  if (status.exitCode !== undefined) return { running: false, exitCode: status.exitCode };
  if (await host.hypervisor.isRunning(record.machine)) return { running: true };
  const console = await readConsoleTail(paths.console);
  const crash = crashReason(console);
  if (!crash) return { running: false, exitCode: undefined };
  return { running: false, exitCode: undefined, crash, consoleTail: crashExcerpt(console) };
}

/**
 * Boots a stopped VM again from its record: same disks (so named volumes and
 * the container's own changes are kept), same ports, same settings. With a
 * checkpoint it resumes from that instead of booting; `status` is then what
 * the guest had reported when the checkpoint was taken.
 */
export async function startService(
  name: string,
  host: Pick<HostContext, 'hypervisor'>,
  options: { checkpoint?: string; status?: string; bootTimeoutMs?: number } = {},
): Promise<VmRecord> {
  const record = await requireRecord(name);
  if (await host.hypervisor.isRunning(record.machine)) throw new ServiceError(`${name} is already running`);
  const volumes = (record.disks ?? []).flatMap((d) => (d.volume ? [d.volume] : []));
  await checkVolumesFree(volumes, host, name);
  const paths = vmPaths(record.machine.dir);
  for (const file of [paths.pid, paths.qmp, paths.agent]) await rm(file, { force: true });
  await writeFile(paths.status, options.checkpoint ? (options.status ?? '') : '');
  const started = Date.now();
  try {
    await host.hypervisor.start(record.machine, options.checkpoint ? { checkpoint: options.checkpoint } : {});
    await host.hypervisor.waitUntilRunning(record.machine, options.bootTimeoutMs ?? 120_000);
    if (options.checkpoint) await syncGuestNetwork(record, host);
  } catch (error: unknown) {
    await host.hypervisor.kill(record.machine).catch(() => undefined);
    throw error;
  }
  record.bootMs = Date.now() - started;
  await writeRecord(record);
  return record;
}

/**
 * A resumed checkpoint runs with the network it was taken on; this applies
 * the one in its guest files, which differ when it was imported into another
 * job (another subnet, other services).
 */
async function syncGuestNetwork(record: VmRecord, host: Pick<HostContext, 'hypervisor'>): Promise<void> {
  const dir = vmPaths(record.machine.dir).guestFiles;
  const read = (name: string): Promise<string> => readFile(path.join(dir, name), 'utf8');
  const settings = await read('settings');
  const value = (key: string): string => new RegExp(`^${key}=(.*)$`, 'm').exec(settings)?.[1] ?? '';
  const network = {
    ip: value('ip'),
    prefix: Number(value('prefix')),
    gateway: value('gateway'),
    hosts: await read('hosts'),
    resolvConf: await read('resolv.conf'),
  };
  const result = await host.hypervisor.exec(record.machine, networkSyncArgv(network), 30_000);
  if (result.exitCode !== 0)
    throw new ServiceError(
      `cannot re-apply the network in ${record.name}: ${result.stderr.toString().trim()}`,
    );
}

export async function requireRecord(name: string): Promise<VmRecord> {
  const record = await readRecord(name);
  if (!record) throw new ServiceError(`no such VM: ${name}`);
  return record;
}

/** Graceful stop (the image's stop signal through the guest), then kill after `graceMs`. Returns the exit code. */
export async function stopService(
  name: string,
  graceMs: number,
  host: Pick<HostContext, 'hypervisor'>,
): Promise<number | undefined> {
  const record = await requireRecord(name);
  const how = await host.hypervisor.stop(record.machine, graceMs);
  const paths = vmPaths(record.machine.dir);
  const status = await readGuestStatus(paths.status);
  if (how === 'killed' && status.exitCode === undefined) {
    // Killed before the guest could report: record what Docker reports for SIGKILL.
    await appendFile(paths.status, 'exited 137\n');
    return 137;
  }
  return status.exitCode;
}

/** Kills (with force) and removes a VM; it leaves the job network unless `keepMember` (it is about to be booted again). */
export async function removeService(
  name: string,
  force: boolean,
  host: Pick<HostContext, 'hypervisor'>,
  options: { keepMember?: boolean } = {},
): Promise<void> {
  let record: VmRecord;
  try {
    record = await requireRecord(name);
  } catch (error: unknown) {
    // A damaged record is reported by every other command; rm -f is how it goes.
    if (!force || !(error instanceof DamagedStateError)) throw error;
    await host.hypervisor.kill({ dir: vmDir(name) });
    await rm(vmDir(name), { recursive: true, force: true });
    if (!options.keepMember) await leaveNetwork(stateDir(), [name]);
    return;
  }
  if (await host.hypervisor.isRunning(record.machine)) {
    if (!force)
      throw new ServiceError(
        `cannot remove "${name}": the VM is running; stop it first or use "hyper rm -f ${name}"`,
      );
    await host.hypervisor.kill(record.machine);
  }
  await rm(record.machine.dir, { recursive: true, force: true });
  if (!options.keepMember) await leaveNetwork(stateDir(), [name]);
}

export async function execInService(
  name: string,
  command: string[],
  host: Pick<HostContext, 'hypervisor'>,
  options: { env?: string[]; timeoutMs?: number; user?: string | undefined } = {},
): Promise<ExecResult> {
  const record = await requireRecord(name);
  const state = await vmState(record, host);
  if (!state.running) {
    const code = state.exitCode === undefined ? '' : ` (exited with code ${state.exitCode})`;
    throw new ServiceError(`cannot exec in "${name}": the VM is not running${code}`);
  }
  if (command.length === 0) throw new ServiceError('no command given: hyper exec NAME -- CMD [ARG...]');
  const argv = execArgv(
    { user: options.user ?? record.user, workdir: record.workdir },
    command,
    options.env ?? [],
  );
  try {
    return await host.hypervisor.exec(record.machine, argv, options.timeoutMs ?? 10 * 60 * 1000);
  } catch (error: unknown) {
    const ended = await stateOnceStopped(record, host, 15_000);
    if (!ended) throw error;
    const why =
      ended.crash ?? (ended.exitCode === undefined ? 'it stopped' : `exited with code ${ended.exitCode}`);
    throw new ServiceError(`"${name}" stopped while the command ran (${why})`, { cause: error });
  }
}

/** The VM's state once it is no longer running, when that happens within `withinMs`; else undefined. */
async function stateOnceStopped(
  record: VmRecord,
  host: Pick<HostContext, 'hypervisor'>,
  withinMs: number,
): Promise<Extract<VmState, { running: false }> | undefined> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const state = await vmState(record, host);
    if (!state.running) return state;
    if (Date.now() > deadline) return undefined;
    await sleep(100);
  }
}

export async function serviceLogs(name: string): Promise<string> {
  const record = await requireRecord(name);
  return readFile(vmPaths(record.machine.dir).serviceLog, 'utf8').catch(() => '');
}

export interface ServiceSummary {
  record: VmRecord;
  state: VmState;
  pid: number | undefined;
}

export async function listServices(host: Pick<HostContext, 'hypervisor'>): Promise<ServiceSummary[]> {
  const summaries: ServiceSummary[] = [];
  for (const record of await listRecords()) summaries.push(await summarize(record, host));
  return summaries;
}

async function summarize(record: VmRecord, host: Pick<HostContext, 'hypervisor'>): Promise<ServiceSummary> {
  const state = await vmState(record, host);
  const pidText = await readFile(vmPaths(record.machine.dir).pid, 'utf8').catch(() => '');
  return { record, state, pid: state.running ? Number.parseInt(pidText, 10) : undefined };
}

/**
 * For teardown: every VM, with those whose record is damaged set apart (with
 * the error that names the file) instead of failing the whole list, so the
 * rest can still be torn down and the damaged ones removed by name.
 */
export async function listServicesForTeardown(
  host: Pick<HostContext, 'hypervisor'>,
): Promise<{ services: ServiceSummary[]; damaged: { name: string; error: DamagedStateError }[] }> {
  const services: ServiceSummary[] = [];
  const damaged: { name: string; error: DamagedStateError }[] = [];
  for (const name of await listVmNames()) {
    try {
      const record = await readRecord(name);
      if (record) services.push(await summarize(record, host));
    } catch (error: unknown) {
      if (!(error instanceof DamagedStateError)) throw error;
      damaged.push({ name, error });
    }
  }
  return { services, damaged };
}
