import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import { guestFiles, mergeEnv, serviceArgv } from '../guest/config.js';
import type { LocalImage } from '../images/image.js';
import { ensureRootfs, rootfsEntryType } from '../images/rootfs.js';
import { imageRunConfig, type ImageRunConfig } from '../images/run-config.js';
import { checkUserSpec } from '../images/users.js';
import type { PortSpec } from '../network/ports.js';
import { CONTAINER_DEFAULTS, validateName, type ContainerSpec, type ImageMount } from '../spec/container.js';
import { unbuiltImageMounts } from '../spec/plan.js';
import { definedOnly } from '../spec/fields.js';
import {
  bindShares,
  guestMountTable,
  planMounts,
  type ImageMountPlan,
  type MountSpec,
} from '../storage/mounts.js';
import { checkMountSources, prepareMountDisks, volumePath } from '../storage/volumes.js';
import { qemuImg } from '../tools/qemu/img.js';
import { vmPaths } from '../vm/paths.js';
import { exists } from '../files.js';
import { bootStep, claimStep, createVm, networkStep, newDraft, recordStep, type Draft } from './create.js';
import { vmDir, type BootContext } from './context.js';
import { writeRecord, type VmRecord } from './record.js';
import { afterStart, BOOT_TIMEOUT_MS, checkVolumesFree, guestNetworkOf } from './container.js';
import {
  copyTemplateDisk,
  findServiceTemplate,
  hostKeyFields,
  keyMounts,
  SERVICE_TEMPLATE_FORMAT,
  type ServiceTemplate,
  type ServiceTemplateKey,
} from './service-templates.js';
import { resolveFor } from './images.js';
import { together, type Step, type Together } from './steps.js';

export interface RunOptions {
  /** Make the VM and leave it created, not booted (docker create); start boots it. */
  createOnly?: boolean;
  /** The named networks it joins, with its aliases on each. */
  networks?: Record<string, { aliases: string[] }> | undefined;
  /** The image as already resolved (`up` pulls every image before planning the network); pulled here when absent. */
  resolved?: LocalImage | undefined;
  log?: (line: string) => void;
  /**
   * Resume it from its service template when there is one, and mark it to
   * be kept as one once healthy (`up` keeps it), per job.settings.templates.
   */
  serviceTemplate?: boolean;
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
  const userMounts = planMounts(spec.volumes, spec.tmpfs, [], baseDir, unbuiltImageMounts(spec));
  await checkMountSources(userMounts, { createMissing: spec.createBindSources === true });
  await checkVolumesFree(
    userMounts.flatMap((m) => (m.kind === 'volume' ? [m.name] : [])),
    job,
  );
  const imageMounts = await buildImageMounts(spec.imageMounts ?? [], job, log);
  const image = options.resolved ?? (await resolveFor(job, spec.image, log, spec.credentials));
  const runConfig = imageRunConfig(image.config);
  const mounts = planMounts(spec.volumes, spec.tmpfs, runConfig.volumes, baseDir, imageMounts);
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
  const env = mergeEnv(runConfig.env, spec.env, spec.hostname ?? name);
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
    stopGraceMs: spec.stopGraceMs,
    restart: spec.guest?.restart,
    postStart: spec.postStart,
    preStop: spec.preStop,
  };
  const keyFields = {
    name,
    stopSignal: spec.stopSignal ?? runConfig.stopSignal ?? '',
    extraHosts: spec.extraHosts ?? [],
    apiSockets: spec.apiSockets ?? [],
    volumeSizes: spec.volumeSizes ?? {},
    guest: guestKey(spec),
  };
  const templated =
    options.serviceTemplate === true && !options.createOnly && job.settings.templates !== 'off'
      ? await templateEligible(mounts, job)
      : false;
  const join = networkStep(() => ({
    service: name,
    aliases: spec.aliases ?? [],
    containerPorts: tcpPorts(spec.ports, spec.expose, runConfig.exposedPorts),
    published: spec.ports,
  }));
  const overlay = (draft: Draft): Promise<void> =>
    qemuImg.createOverlay(vmPaths(draft.dir).rootDisk, base.path, 'raw');
  const create = (useTemplate: boolean): Promise<VmRecord> => {
    const templating = templated ? { found: undefined as ServiceTemplate | undefined } : undefined;
    const steps: (Step<Draft> | Together<Draft>)[] = [
      claimStep(nameInUse),
      ...(templating
        ? [
            join,
            templateStep(templating, { ...keyFields, mounts, fields, base: base.path, use: useTemplate }),
            disksStep(mounts, spec, templating),
            {
              name: 'make the root disk',
              run: (draft: Draft) =>
                templating.found
                  ? copyFromTemplate(
                      templating.found,
                      path.basename(templating.found.rootDisk),
                      vmPaths(draft.dir).rootDisk,
                      draft.name,
                    )
                  : overlay(draft),
            },
          ]
        : // The root disk's overlay needs nothing of the network: qemu-img runs while the network is made.
          [together([join, { name: 'make the root disk', run: overlay }]), disksStep(mounts, spec)]),
      guestFilesStep(spec, runConfig, mounts, fields),
      recordStep(fields, async (draft) => {
        if (templating && draft.record && draft.templateKey)
          draft.record.serviceTemplate = { key: draft.templateKey, base: base.path };
      }),
      ...(options.createOnly
        ? []
        : [
            templating
              ? withTemplateResume(templating, bootStep(BOOT_TIMEOUT_MS))
              : bootStep(BOOT_TIMEOUT_MS),
          ]),
    ];
    return createVm(newDraft(job, name, log), steps);
  };
  let record: VmRecord;
  if (!templated) record = await create(false);
  else {
    try {
      record = await create((job.settings.templates ?? 'auto') === 'auto');
    } catch (error: unknown) {
      if (!(error instanceof TemplateResumeError)) throw error;
      // The template is what failed: it goes, and the service starts as it would without one.
      log(`warning: ${error.message}; removed it, booting in full`);
      await rm(error.template, { recursive: true, force: true });
      record = await create(false);
    }
  }
  if (!options.createOnly) await afterStart(record, job);
  return record;
}

/**
 * The images a service mounts (compose `type: image`), each pulled and its
 * read-only base built as the service's own image is; a subpath must be a
 * directory in it.
 */
async function buildImageMounts(
  wanted: readonly ImageMount[],
  job: BootContext,
  log: (line: string) => void,
): Promise<ImageMountPlan[]> {
  const built: ImageMountPlan[] = [];
  for (const mount of wanted) {
    const image = await resolveFor(job, mount.image, log);
    const base = await ensureRootfs(image, job.cacheDir, { scratchDir: job.host.buildScratchDir });
    if (mount.subpath !== undefined) {
      const type = await rootfsEntryType(base.path, mount.subpath);
      if (type !== 'directory')
        throw new HyperError(
          `image mount of ${mount.image} on ${mount.target}: ${
            type === undefined ? 'the image has no' : `the image's ${type} is not a directory:`
          } /${mount.subpath}; give a subpath that is a directory in the image`,
          { kind: 'Invalid' },
        );
    }
    built.push({ ...mount, base: base.path });
  }
  return built;
}

/**
 * Whether a VM of these mounts can be kept as, and started from, a service
 * template: its devices fit the template layout (no live shares), and no
 * named volume exists yet, so that its content comes from the start the key
 * describes, not from an earlier job (and one made ahead, with a size of
 * its own, is never written over by a template's copy).
 */
async function templateEligible(mounts: readonly MountSpec[], job: BootContext): Promise<boolean> {
  // A template keeps copies of its disks; an image's base is shared, not the VM's to copy.
  if (mounts.some((m) => m.kind === 'image')) return false;
  const share = (await job.hypervisor.canShareDirectories()) && mounts.some((m) => m.kind === 'bind');
  const disks = mounts
    .filter((m) => m.kind !== 'tmpfs')
    .map((m, index) => ({ serial: `vol${index}`, path: '', readOnly: m.readOnly }));
  if (share || job.hypervisor.templateSlots({ disks }) === undefined) return false;
  for (const mount of mounts)
    if (mount.kind === 'volume' && (await exists(volumePath(job.stateDir, mount.name)))) return false;
  return true;
}

/**
 * Copies a template's disk for the VM. A failure (the template removed by
 * another job meanwhile) is the template's: the caller boots in full.
 */
async function copyFromTemplate(
  template: ServiceTemplate,
  file: string,
  to: string,
  name: string,
): Promise<void> {
  try {
    await copyTemplateDisk(path.join(template.dir, file), to);
  } catch (error: unknown) {
    throw new TemplateResumeError(
      `${name}: the disk ${file} of service template ${template.dir} could not be copied: ${(error as Error).message}`,
      template.dir,
      error,
    );
  }
}

/** A resume from a service template failed: the caller removes `template` and boots in full. */
class TemplateResumeError extends HyperError {
  constructor(
    message: string,
    readonly template: string,
    cause: unknown,
  ) {
    super(message, { cause });
  }
}

/** Works out the service's template key once its network is known, and finds its template when `use`. */
function templateStep(
  templating: { found: ServiceTemplate | undefined },
  inputs: Omit<
    ServiceTemplateKey,
    | 'format'
    | 'mounts'
    | 'imageDigest'
    | 'argv'
    | 'env'
    | 'user'
    | 'workdir'
    | 'memoryMiB'
    | 'cpus'
    | 'bundle'
    | 'qemu'
    | 'accel'
    | 'cpu'
    | 'network'
    | 'volumeBytes'
  > & {
    mounts: readonly MountSpec[];
    fields: {
      imageDigest: string;
      argv: string[];
      env: string[];
      user: string;
      workdir: string;
      memoryMiB: number;
      cpus: number;
    };
    base: string;
    use: boolean;
  },
): Step<Draft> {
  return {
    name: 'find the service template',
    async run(draft) {
      const { job } = draft;
      const { fields } = inputs;
      const key: ServiceTemplateKey = {
        format: SERVICE_TEMPLATE_FORMAT,
        name: inputs.name,
        imageDigest: fields.imageDigest,
        argv: fields.argv,
        env: fields.env,
        user: fields.user,
        workdir: fields.workdir,
        stopSignal: inputs.stopSignal,
        mounts: await keyMounts(inputs.mounts),
        extraHosts: inputs.extraHosts,
        apiSockets: inputs.apiSockets,
        ...(inputs.guest ? { guest: inputs.guest } : {}),
        volumeBytes: job.settings.volumeSize ?? 0,
        volumeSizes: inputs.volumeSizes,
        memoryMiB: fields.memoryMiB,
        cpus: fields.cpus,
        ...(await hostKeyFields(job)),
        network: draft.network?.mode ?? 'user',
      };
      draft.templateKey = key;
      if (!inputs.use) return;
      try {
        templating.found = await findServiceTemplate(job.cacheDir, key, inputs.base);
      } catch (error: unknown) {
        draft.log(`warning: ${(error as Error).message}; booting in full`);
      }
    },
  };
}

/** The boot step, or with a template found, the resume from it: its status, its saved RAM, then this job's network. */
function withTemplateResume(
  templating: { found: ServiceTemplate | undefined },
  boot: Step<Draft>,
): Step<Draft> {
  return {
    name: 'boot or resume',
    async run(draft) {
      const template = templating.found;
      if (!template) return boot.run(draft);
      const record = draft.record;
      if (!record) throw new HyperError(`${draft.name}: no record was written`);
      const { hypervisor } = draft.job;
      const started = Date.now();
      try {
        await writeFile(vmPaths(draft.dir).status, template.status);
        const { origin } = await hypervisor.start(record.machine, {
          saved: { ram: template.ram, state: template.state },
          network: await guestNetworkOf(record),
        });
        record.origin = origin;
        await hypervisor.waitUntilRunning(record.machine, BOOT_TIMEOUT_MS);
      } catch (error: unknown) {
        throw new TemplateResumeError(
          `${draft.name}: the resume from service template ${template.dir} failed: ${(error as Error).message}`,
          template.dir,
          error,
        );
      }
      record.bootMs = Date.now() - started;
      record.startedAt = new Date(started).toISOString();
      draft.log(`started from service template ${template.dir} in ${record.bootMs} ms`);
      await writeRecord(record);
    },
    undo: boot.undo,
  };
}

function nameInUse(name: string): string {
  return `the name "${name}" is already in use by a VM; remove it with "hyper rm ${name}" or choose another --name`;
}

/**
 * Named volumes in the job (made on first use), anonymous volumes and
 * host-path copies in the VM's directory; with a service template found,
 * copies of the template's disks instead, which hold what the service's
 * first start put there.
 */
function disksStep(
  mounts: readonly MountSpec[],
  spec: ContainerSpec,
  templating?: { found: ServiceTemplate | undefined },
): Step<Draft> {
  const madeVolumes: string[] = [];
  return {
    name: 'make the disks',
    async run(draft) {
      const { job } = draft;
      const template = templating?.found;
      if (template) {
        for (const disk of template.disks) {
          const at = disk.volume
            ? volumePath(job.stateDir, disk.volume)
            : path.join(draft.dir, 'disks', `${disk.serial}.qcow2`);
          if (disk.volume) madeVolumes.push(at);
          await copyFromTemplate(template, disk.file, at, draft.name);
          draft.disks.push({
            serial: disk.serial,
            path: at,
            target: disk.target,
            readOnly: disk.readOnly,
            copyUp: false,
            ...(disk.volume ? { volume: disk.volume } : {}),
          });
        }
        return;
      }
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
    async undo() {
      // Only volumes copied from a template: none existed before, and a full boot makes them.
      for (const volume of madeVolumes) await rm(volume, { force: true });
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
        hostname: spec.hostname ?? draft.name,
        argv: fields.argv,
        env: fields.env,
        user: fields.user,
        workdir: fields.workdir,
        stopSignal: spec.stopSignal ?? runConfig.stopSignal,
        network: withExtraHosts(draft.view?.guest ?? missing('network'), spec.extraHosts ?? []),
        mounts: guestMountTable(draft.disks, mounts, draft.shares, draft.relaySockets),
        ...(spec.guest ? { settings: spec.guest } : {}),
        ...(spec.files ? { files: spec.files } : {}),
      });
      await mkdir(paths.guestFiles);
      for (const file of files) await writeFile(path.join(paths.guestFiles, file.name), file.content);
      draft.guestFiles = files.map((f) => ({ name: f.name, path: path.join(paths.guestFiles, f.name) }));
    },
  };
}

/**
 * What a service template's key holds of the guest settings a spec adds (a
 * hostname, kernel settings, files by digest), or undefined when it adds
 * none, so that the keys of services without them stay as they were. Pure.
 */
function guestKey(spec: ContainerSpec): Record<string, unknown> | undefined {
  const files = spec.files?.map(({ content, ...file }) => ({
    ...file,
    sha256: createHash('sha256').update(content).digest('hex'),
  }));
  // post_start hooks change what a service template keeps.
  const key = definedOnly({
    hostname: spec.hostname,
    settings: spec.guest,
    files,
    postStart: spec.postStart,
  });
  return Object.keys(key).length > 0 ? key : undefined;
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
