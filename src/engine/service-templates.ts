// Service templates: a service's whole state once it first became healthy
// (its RAM and device state as a checkpoint keeps them, and copies of every
// disk), kept in the cache dir under a key of everything that state depends
// on. A later start with the same key makes the VM's disks from the copies
// and resumes from the saved RAM, mapped copy-on-write: postgres skips
// initdb and its start-up, and answers with the rows its first run seeded.
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileDigest } from '../files.js';
import { run } from '../process/run.js';
import type { MountDisk, MountSpec } from '../storage/mounts.js';
import { qemuImg } from '../tools/qemu/img.js';
import { checkpointPaths, vmPaths } from '../vm/paths.js';
import { isAlive } from '../process/pids.js';
import { mappedFiles } from '../vm/qemu/template.js';
import type { BootContext, JobContext } from './context.js';
import { keepOnly } from './export.js';
import type { VmRecord } from './record.js';
import { guestCpu, qemuVersion } from './snapshots.js';
import type { ServiceTemplateKey } from './template-key.js';

export type { ServiceTemplateKey };

/** Bumped whenever what a template holds, or how it is resumed, changes meaning. */
export const SERVICE_TEMPLATE_FORMAT = 1;
/** The snapshot tag a template is taken under; deleted from the service's disks once copied. */
const TAG = 'hyper-service-template';

interface TemplateDisk extends MountDisk {
  /** The copy's file name in the template's directory. */
  file: string;
}

export interface ServiceTemplateMeta {
  key: ServiceTemplateKey;
  /** The root filesystem base the root overlay copy is backed by, as a file: a rebuilt base is another. */
  base: string;
  /** The image config digest that base was built from; absent in templates made before they travelled. */
  configDigest?: string;
  disks: TemplateDisk[];
  /** The guest's status reports when it was saved, put back when a VM resumes from it. */
  status: string;
  ramBytes: number;
  stateBytes: number;
  stateSha256: string;
  madeMs: number;
  tookMs: number;
}

/** A template on disk, checked. */
export interface ServiceTemplate {
  dir: string;
  ram: string;
  state: string;
  rootDisk: string;
  disks: TemplateDisk[];
  status: string;
}

export class ServiceTemplateError extends Error {
  override name = 'ServiceTemplateError';
}

/** Where a host's service templates are kept, under its cache dir. */
export function serviceTemplateRoot(cacheDir: string): string {
  return path.join(cacheDir, 'templates', 'service');
}

/** The template directory's name: the service (readable) and the key (hashed). Pure. */
export function serviceTemplateName(key: ServiceTemplateKey): string {
  const digest = createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16);
  return `${key.name}-${digest}`;
}

/**
 * A digest of a host directory's content as it is copied into a disk:
 * every entry's path, type, mode and content (or link target).
 */
export async function treeDigest(root: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const at = path.join(dir, name);
      const relative = `${prefix}${name}`;
      const info = await lstat(at);
      hash.update(`${relative}\0${info.mode}\0${info.uid}\0${info.gid}\0`);
      if (info.isDirectory()) await walk(at, `${relative}/`);
      else if (info.isSymbolicLink()) hash.update(`link\0${await readlink(at)}\0`);
      else if (info.isFile()) hash.update(`file\0${await fileDigest(at)}\0`);
    }
  };
  const top = await stat(root);
  hash.update(`${top.mode}\0${top.uid}\0${top.gid}\0`);
  await walk(root, '');
  return hash.digest('hex');
}

/** The mounts as the key holds them: host directories by content, not path. */
export async function keyMounts(mounts: readonly MountSpec[]): Promise<unknown[]> {
  return Promise.all(
    mounts.map(async (mount) =>
      mount.kind === 'bind'
        ? {
            kind: 'bind',
            content: await treeDigest(mount.source),
            target: mount.target,
            readOnly: mount.readOnly,
          }
        : mount,
    ),
  );
}

/** What the key takes from the host: the guest bundle, QEMU, accelerator and guest CPU. */
export async function hostKeyFields(
  job: Pick<BootContext, 'bundle' | 'accel' | 'cpuModel' | 'host' | 'cacheDir'>,
): Promise<Pick<ServiceTemplateKey, 'bundle' | 'qemu' | 'accel' | 'cpu'>> {
  return {
    bundle: job.bundle.version,
    qemu: await qemuVersion(job),
    accel: job.accel,
    cpu: await guestCpu(job.accel, job.cpuModel),
  };
}

/** A template directory's meta.json, parsed (not checked). */
export async function readTemplateMeta(dir: string): Promise<ServiceTemplateMeta> {
  return JSON.parse(await readFile(path.join(dir, 'meta.json'), 'utf8')) as ServiceTemplateMeta;
}

export async function fileIdentity(file: string): Promise<string> {
  const info = await stat(file);
  return `${file}|${info.size}|${info.mtimeMs}|${info.ino}`;
}

/**
 * The template for `key`, checked against the base the VM would boot on;
 * undefined when there is none. A damaged one, or one made on another base,
 * is removed, and the error says why.
 */
export async function findServiceTemplate(
  cacheDir: string,
  key: ServiceTemplateKey,
  base: string,
): Promise<ServiceTemplate | undefined> {
  const dir = path.join(serviceTemplateRoot(cacheDir), serviceTemplateName(key));
  let meta: ServiceTemplateMeta;
  try {
    meta = await readTemplateMeta(dir);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return refuse(dir, `its meta.json cannot be read (${(error as Error).message})`);
  }
  if (JSON.stringify(meta.key) !== JSON.stringify(key)) return refuse(dir, 'it was made for another key');
  if (meta.base !== (await fileIdentity(base).catch(() => 'missing')))
    return refuse(dir, `the root filesystem ${base} is not the one it was made on`);
  const template: ServiceTemplate = {
    dir,
    ram: path.join(dir, 'ram'),
    state: path.join(dir, 'state'),
    rootDisk: path.join(dir, 'rootfs.qcow2'),
    disks: meta.disks,
    status: meta.status,
  };
  const ram = await stat(template.ram).catch(() => undefined);
  if (ram?.size !== meta.ramBytes)
    return refuse(dir, `its RAM file holds ${ram?.size ?? 'no'} bytes, not ${meta.ramBytes}`);
  const state = await stat(template.state).catch(() => undefined);
  if (state?.size !== meta.stateBytes || (await fileDigest(template.state)) !== meta.stateSha256)
    return refuse(dir, 'its device state is not what was saved (digest differs)');
  for (const file of [template.rootDisk, ...meta.disks.map((d) => path.join(dir, d.file))]) {
    if (!(await stat(file).catch(() => undefined))) return refuse(dir, `${path.basename(file)} is missing`);
  }
  return template;
}

async function refuse(dir: string, why: string): Promise<never> {
  // VMs resumed from it keep their mapping of the RAM file, and their own disk copies.
  await rm(dir, { recursive: true, force: true });
  throw new ServiceTemplateError(`the service template ${dir} was refused and removed: ${why}`);
}

/**
 * Keeps the running service `record` as the template for `key`: a
 * checkpoint of it whose RAM and state move into the template, and copies of
 * its disks taken while it is paused, with that checkpoint applied and alone
 * in them; then the checkpoint leaves the service's own disks. Returns the
 * template's directory, or undefined when one for the key is there already.
 */
export async function keepServiceTemplate(
  record: VmRecord,
  key: ServiceTemplateKey,
  base: string,
  job: JobContext,
  options: { replace: boolean },
): Promise<{ dir: string; tookMs: number } | undefined> {
  const started = Date.now();
  const root = serviceTemplateRoot(job.cacheDir);
  const dir = path.join(root, serviceTemplateName(key));
  // VMs resumed from the one replaced keep their mapping of its RAM, and their own disk copies.
  if (options.replace) await rm(dir, { recursive: true, force: true });
  else if (await stat(dir).catch(() => undefined)) return undefined;
  const work = `${dir}.making-${process.pid}`;
  const machine = record.machine;
  const writable = ['rootfs', ...(record.disks ?? []).filter((d) => !d.readOnly).map((d) => d.serial)];
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    await job.hypervisor.saveCheckpoint(machine, TAG);
    // What the guest had reported when its RAM was saved: the status a resume starts with.
    const status = await readFile(vmPaths(machine.dir).status, 'utf8');
    try {
      const saved = checkpointPaths(machine.dir, TAG);
      await moveFile(saved.ram, path.join(work, 'ram'));
      await moveFile(saved.state, path.join(work, 'state'));
      const disks: TemplateDisk[] = (record.disks ?? []).map((d) => ({ ...d, file: `${d.serial}.qcow2` }));
      const copies: [string, string][] = [
        [machine.rootDisk, 'rootfs.qcow2'],
        ...disks.map((d): [string, string] => [d.path, d.file]),
      ];
      await job.hypervisor.pause(machine);
      try {
        for (const [from, entry] of copies)
          await run({ program: 'cp', args: ['--sparse=always', from, path.join(work, entry)] });
      } finally {
        await job.hypervisor.resume(machine);
      }
      for (const [, entry] of copies) {
        const copy = path.join(work, entry);
        const snapshots = await qemuImg.snapshotNames(copy);
        if (!snapshots.includes(TAG)) continue;
        await keepOnly(copy, TAG, snapshots);
        // Applied, the snapshot itself would only pin clusters the VMs made from the copy write over.
        await qemuImg.deleteSnapshot(copy, TAG);
      }
      const meta: ServiceTemplateMeta = {
        key,
        base: await fileIdentity(base),
        configDigest: record.imageConfigDigest,
        disks: disks.map((d) => ({ ...d, path: '' })),
        status,
        ramBytes: (await stat(path.join(work, 'ram'))).size,
        stateBytes: (await stat(path.join(work, 'state'))).size,
        stateSha256: await fileDigest(path.join(work, 'state')),
        madeMs: Date.now(),
        tookMs: Date.now() - started,
      };
      await writeFile(path.join(work, 'meta.json'), JSON.stringify(meta, null, 2));
    } finally {
      await job.hypervisor.deleteSnapshot(machine, writable, TAG);
    }
    try {
      await rename(work, dir);
    } catch (error: unknown) {
      // Another job made it meanwhile: theirs stays.
      if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      return undefined;
    }
    // One template per service name: the ones it replaces (another image, env, machine) go once no VM maps them.
    const mapped = await mappedFiles();
    for (const other of await listServiceTemplates(job.cacheDir, mapped))
      if (other.dir !== dir && other.service === key.name && !other.usedBy.length)
        await rm(other.dir, { recursive: true, force: true });
    return { dir, tookMs: Date.now() - started };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Rename, or copy (sparse) and remove where the cache dir is on another filesystem. */
async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await run({ program: 'cp', args: ['--sparse=always', from, to] });
    await rm(from, { force: true });
  }
}

/** Copies a template's disk to where the VM keeps it (sparse). */
export async function copyTemplateDisk(from: string, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  await run({ program: 'cp', args: ['--sparse=always', from, to] });
}

/** A template as `hyper template ls` shows it. */
export interface ServiceTemplateInfo {
  dir: string;
  service: string;
  image: string;
  madeMs: number;
  diskBytes: number;
  usedBy: number[];
}

/** Every service template here, with the pids of the VMs mapping its RAM (from `mapped`). */
export async function listServiceTemplates(
  cacheDir: string,
  mapped: Map<string, number[]>,
): Promise<ServiceTemplateInfo[]> {
  const root = serviceTemplateRoot(cacheDir);
  const found: ServiceTemplateInfo[] = [];
  for (const name of await readdir(root).catch(() => [] as string[])) {
    // One being made is not a template yet: never listed, so never pruned under its maker.
    if (/\.making-\d+$/.test(name)) continue;
    const dir = path.join(root, name);
    try {
      const meta = await readTemplateMeta(dir);
      let diskBytes = 0;
      for (const file of await readdir(dir)) diskBytes += (await stat(path.join(dir, file))).blocks * 512;
      found.push({
        dir,
        service: meta.key.name,
        image: meta.key.imageDigest,
        madeMs: meta.madeMs,
        diskBytes,
        usedBy: mapped.get(path.join(dir, 'ram')) ?? [],
      });
    } catch {
      // Being made, or damaged: not listed.
    }
  }
  return found;
}

/** Removes the service templates no VM maps, and what a process that died left half-made. */
export async function pruneServiceTemplates(
  cacheDir: string,
  mapped: Map<string, number[]>,
): Promise<string[]> {
  const removed: string[] = [];
  for (const template of await listServiceTemplates(cacheDir, mapped)) {
    if (template.usedBy.length) continue;
    await rm(template.dir, { recursive: true, force: true });
    removed.push(template.dir);
  }
  const root = serviceTemplateRoot(cacheDir);
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const making = /\.making-(\d+)$/.exec(name);
    if (making && !isAlive(Number(making[1]))) {
      await rm(path.join(root, name), { recursive: true, force: true });
      removed.push(path.join(root, name));
    }
  }
  return removed;
}
