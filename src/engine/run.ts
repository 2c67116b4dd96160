import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import { guestFiles, mergeEnv, serviceArgv } from '../guest/config.js';
import type { LocalImage } from '../images/image.js';
import { ensureRootfs } from '../images/rootfs.js';
import { imageRunConfig, type ImageRunConfig } from '../images/run-config.js';
import { checkUserSpec } from '../images/users.js';
import type { PortSpec } from '../network/ports.js';
import { CONTAINER_DEFAULTS, validateName, type ContainerSpec } from '../spec/container.js';
import { bindShares, guestMountTable, planMounts, type MountSpec } from '../storage/mounts.js';
import { checkMountSources, prepareMountDisks } from '../storage/volumes.js';
import { qemuImg } from '../tools/qemu/img.js';
import { vmPaths } from '../vm/paths.js';
import { exists } from '../files.js';
import { bootStep, claimStep, createVm, networkStep, newDraft, recordStep, type Draft } from './create.js';
import { vmDir, type BootContext } from './context.js';
import type { VmRecord } from './record.js';
import { BOOT_TIMEOUT_MS, checkVolumesFree } from './container.js';
import { resolveFor } from './images.js';
import type { Step } from './steps.js';

export interface RunOptions {
  /** Make the VM and leave it created, not booted (docker create); start boots it. */
  createOnly?: boolean;
  /** The named networks it joins, with its aliases on each. */
  networks?: Record<string, { aliases: string[] }> | undefined;
  /** The image as already resolved (`up` pulls every image before planning the network); pulled here when absent. */
  resolved?: LocalImage | undefined;
  log?: (line: string) => void;
}

/**
 * Creates and boots one container VM: everything that can be checked is
 * checked before the first side effect; then the create steps run, and a
 * failure undoes those done so far.
 */
export async function runContainer(
  spec: ContainerSpec,
  job: BootContext,
  options: RunOptions = {},
): Promise<VmRecord> {
  const log = options.log ?? (() => undefined);
  const { name } = spec;
  validateName(name);
  if (await exists(vmDir(job, name))) throw new HyperError(nameInUse(name), { kind: 'Conflict' });
  const memoryMiB = spec.memoryMiB ?? CONTAINER_DEFAULTS.memoryMiB;
  const cpus = spec.cpus ?? CONTAINER_DEFAULTS.cpus;
  if (!Number.isInteger(memoryMiB) || memoryMiB < 64)
    throw new HyperError(`memory ${memoryMiB} MiB is too small; give at least 64`, { kind: 'Invalid' });
  if (!Number.isInteger(cpus) || cpus < 1)
    throw new HyperError(`cpus must be a whole number of at least 1`, { kind: 'Invalid' });

  // Mounts are checked before any pull; the image's VOLUMEs join in once it is known.
  // The doors give a base dir (the working directory, the workspace, the compose file's); '/' only as a last resort.
  const baseDir = spec.baseDir ?? '/';
  const userMounts = planMounts(spec.volumes, spec.tmpfs, [], baseDir);
  await checkMountSources(userMounts, { createMissing: spec.createBindSources === true });
  await checkVolumesFree(
    userMounts.flatMap((m) => (m.kind === 'volume' ? [m.name] : [])),
    job,
  );
  const image = options.resolved ?? (await resolveFor(job, spec.image, log, spec.credentials));
  const runConfig = imageRunConfig(image.config);
  const mounts = planMounts(spec.volumes, spec.tmpfs, runConfig.volumes, baseDir);
  const base = await ensureRootfs(image, job.cacheDir, { scratchDir: job.host.buildScratchDir });
  log(`${base.cached ? 'Reusing' : 'Built'} root filesystem ${path.basename(base.path)}`);
  const user = spec.user ?? runConfig.user;
  await checkUserSpec(base.path, user, spec.image);

  const healthcheck = spec.healthcheck ?? runConfig.healthcheck;
  const argv = serviceArgv(
    runConfig,
    { entrypoint: spec.entrypoint, command: spec.command ?? [] },
    spec.image,
  );
  const env = mergeEnv(runConfig.env, spec.env, name);
  const fields = {
    image: spec.image,
    imageDigest: image.manifestDigest,
    imageConfigDigest: image.configDigest,
    imageBlobs: [image.configDigest, ...image.layers.map((layer) => layer.digest)],
    user,
    workdir: spec.workdir ?? runConfig.workingDir,
    labels: spec.labels ?? {},
    healthcheck: healthcheck === 'none' ? undefined : healthcheck,
    memoryMiB,
    cpus,
    argv,
    env,
    networks: options.networks,
  };
  const steps: Step<Draft>[] = [
    claimStep(nameInUse),
    networkStep(() => ({
      service: name,
      aliases: spec.aliases ?? [],
      containerPorts: tcpPorts(spec.ports, spec.expose, runConfig.exposedPorts),
      published: spec.ports,
    })),
    disksStep(mounts, spec),
    guestFilesStep(spec, runConfig, mounts, fields),
    {
      name: 'make the root disk',
      run: (draft) => qemuImg.createOverlay(vmPaths(draft.dir).rootDisk, base.path, 'raw'),
    },
    recordStep(fields, async () => undefined),
    ...(options.createOnly ? [] : [bootStep(BOOT_TIMEOUT_MS)]),
  ];
  return createVm(newDraft(job, name, log), steps);
}

function nameInUse(name: string): string {
  return `the name "${name}" is already in use by a VM; remove it with "hyper rm ${name}" or choose another --name`;
}

/** Named volumes in the job (made on first use), anonymous volumes and host-path copies in the VM's directory. */
function disksStep(mounts: readonly MountSpec[], spec: ContainerSpec): Step<Draft> {
  return {
    name: 'make the disks',
    async run(draft) {
      const { job } = draft;
      // Bind mounts are shared live where the host can (virtiofs), else copied into disks.
      const share = await job.hypervisor.canShareDirectories();
      draft.disks = await prepareMountDisks(
        job.stateDir,
        mounts,
        draft.dir,
        { defaultBytes: job.settings.volumeSize, named: spec.volumeSizes },
        { shareBinds: share },
      );
      draft.shares = share ? bindShares(mounts) : [];
    },
  };
}

/** The init's settings, argv, env, hosts and resolv.conf, handed to the guest through fw_cfg. */
function guestFilesStep(
  spec: ContainerSpec,
  runConfig: ImageRunConfig,
  mounts: readonly MountSpec[],
  fields: { user: string; workdir: string; argv: string[]; env: string[] },
): Step<Draft> {
  return {
    name: 'write the guest files',
    async run(draft) {
      const paths = vmPaths(draft.dir);
      draft.relaySockets = [...(spec.apiSockets ?? [])];
      const files = guestFiles({
        hostname: draft.name,
        argv: fields.argv,
        env: fields.env,
        user: fields.user,
        workdir: fields.workdir,
        stopSignal: spec.stopSignal ?? runConfig.stopSignal,
        network: withExtraHosts(draft.view?.guest ?? missing('network'), spec.extraHosts ?? []),
        mounts: guestMountTable(draft.disks, mounts, draft.shares, draft.relaySockets),
      });
      await mkdir(paths.guestFiles);
      for (const file of files) await writeFile(path.join(paths.guestFiles, file.name), file.content);
      draft.guestFiles = files.map((f) => ({ name: f.name, path: path.join(paths.guestFiles, f.name) }));
    },
  };
}

/** The job network's hosts file with the container's own extra entries (docker --add-host) after it. Pure. */
function withExtraHosts<T extends { hosts: string }>(
  guest: T,
  extra: readonly { host: string; ip: string }[],
): T {
  if (extra.length === 0) return guest;
  const lines = extra.map((entry) => `${entry.ip}\t${entry.host}\n`).join('');
  return { ...guest, hosts: `${guest.hosts.replace(/\n?$/, '\n')}${lines}` };
}

function missing(what: string): never {
  throw new HyperError(`the ${what} step did not run before the guest files`);
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
