// Service templates carried between machines, beside the images in the
// action's cache archive: each template's device state, disk copies and RAM
// (as a compact qcow2, since the archiver would read every zero of the sparse
// raw file). A template travels only with the root filesystem it was made on:
// it is read back only when that base came from the same archive, byte for
// byte the one its root overlay was written against.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exists, linkOrCopy } from '../files.js';
import { checkStandaloneQcow2, requireRegularFile } from '../images/cache-archive.js';
import { rootfsPath } from '../images/rootfs.js';
import { qemuImg } from '../tools/qemu/img.js';
import {
  fileIdentity,
  readTemplateMeta,
  SERVICE_TEMPLATE_FORMAT,
  serviceTemplateName,
  serviceTemplateRoot,
  type ServiceTemplateMeta,
} from './service-templates.js';

const MANIFEST = 'manifest.json';
const FORMAT = 1;
const RAM = 'ram.qcow2';
/** A template's directory name: a service name, then 16 hex digits of its key. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{16}$/;

interface TemplateManifest {
  format: number;
  templates: string[];
}

export interface TemplateArchiveReport {
  templates: number;
  /** Templates left out, each with the reason. */
  skipped: string[];
}

function archiveRoot(dir: string): string {
  return path.join(dir, 'templates');
}

/** The files a template holds besides its RAM: state, meta, the root overlay and each disk copy. */
function plainFiles(meta: ServiceTemplateMeta): string[] {
  return ['meta.json', 'state', 'rootfs.qcow2', ...meta.disks.map((disk) => disk.file)];
}

/**
 * Puts the service templates `names` from `cacheDir` into `dir/templates`.
 * A template that is not there, or was made before templates recorded their
 * root filesystem, is left out with the reason.
 */
export async function writeTemplateArchive(
  cacheDir: string,
  names: readonly string[],
  dir: string,
): Promise<TemplateArchiveReport> {
  const root = archiveRoot(dir);
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  const manifest: TemplateManifest = { format: FORMAT, templates: [] };
  const skipped: string[] = [];
  for (const name of new Set(names)) {
    const source = path.join(serviceTemplateRoot(cacheDir), name);
    const target = path.join(root, name);
    try {
      const meta = await readTemplateMeta(source).catch(() => {
        throw new Error('not in the cache dir');
      });
      if (!meta.configDigest) throw new Error('made before templates recorded their root filesystem');
      await mkdir(target);
      for (const file of plainFiles(meta)) await linkOrCopy(path.join(source, file), path.join(target, file));
      await qemuImg.convert(path.join(source, 'ram'), path.join(target, RAM), { from: 'raw', to: 'qcow2' });
      manifest.templates.push(name);
    } catch (error: unknown) {
      await rm(target, { recursive: true, force: true });
      skipped.push(`service template ${name}: ${(error as Error).message}`);
    }
  }
  await writeFile(path.join(root, MANIFEST), JSON.stringify(manifest, null, 2));
  return { templates: manifest.templates.length, skipped };
}

/**
 * Moves the templates in `dir/templates` into `cacheDir`. `bases` are the
 * config digests whose root filesystems were read from the same archive:
 * a template on any other base is left out, as is one whose files are not
 * what its meta says. Each template is published whole or not at all;
 * one already in the cache is kept as it is.
 */
export async function readTemplateArchive(
  dir: string,
  cacheDir: string,
  bases: readonly string[],
): Promise<TemplateArchiveReport> {
  const report: TemplateArchiveReport = { templates: 0, skipped: [] };
  const root = archiveRoot(dir);
  let manifest: TemplateManifest;
  try {
    manifest = JSON.parse(await readFile(path.join(root, MANIFEST), 'utf8')) as TemplateManifest;
  } catch (error: unknown) {
    // An entry saved before templates were carried has none.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return report;
    report.skipped.push(`the service templates: ${(error as Error).message}`);
    return report;
  }
  if (manifest.format !== FORMAT || !Array.isArray(manifest.templates)) {
    report.skipped.push(`the service templates: not a template archive of format ${FORMAT}`);
    return report;
  }
  for (const name of manifest.templates) {
    try {
      if (typeof name !== 'string' || !NAME.test(name)) throw new Error('not a template name');
      if (await adoptTemplate(path.join(root, name), name, cacheDir, bases)) report.templates++;
    } catch (error: unknown) {
      report.skipped.push(`service template ${String(name)}: ${(error as Error).message}`);
    }
  }
  return report;
}

/** Checks one archived template and publishes it; false when the cache holds it already. */
async function adoptTemplate(
  source: string,
  name: string,
  cacheDir: string,
  bases: readonly string[],
): Promise<boolean> {
  const meta = await readTemplateMeta(source);
  if (meta.key?.format !== SERVICE_TEMPLATE_FORMAT)
    throw new Error(
      `made in template format ${meta.key?.format}, this version uses ${SERVICE_TEMPLATE_FORMAT}`,
    );
  if (serviceTemplateName(meta.key) !== name) throw new Error('its name does not match its key');
  if (!meta.configDigest || !bases.includes(meta.configDigest))
    throw new Error('its root filesystem was not restored with it, so its root disk cannot be trusted here');
  if (!Array.isArray(meta.disks) || meta.disks.some((disk) => !/^[A-Za-z0-9_-]+\.qcow2$/.test(disk.file)))
    throw new Error('its meta.json lists a disk that is not a plain file name');
  const target = path.join(serviceTemplateRoot(cacheDir), name);
  if (await exists(target)) return false;
  const base = rootfsPath(cacheDir, meta.configDigest);
  const work = `${target}.making-${process.pid}`;
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    await requireRegularFile(path.join(source, 'state'));
    await linkOrCopy(path.join(source, 'state'), path.join(work, 'state'));
    await checkStandaloneQcow2(path.join(source, RAM));
    await qemuImg.convert(path.join(source, RAM), path.join(work, 'ram'), { from: 'qcow2', to: 'raw' });
    for (const disk of meta.disks) {
      await checkStandaloneQcow2(path.join(source, disk.file));
      await linkOrCopy(path.join(source, disk.file), path.join(work, disk.file));
    }
    // The root overlay's backing file is the base on the machine that made it: rebased onto ours below.
    await checkStandaloneQcow2(path.join(source, 'rootfs.qcow2'), 'allowed');
    await linkOrCopy(path.join(source, 'rootfs.qcow2'), path.join(work, 'rootfs.qcow2'));
    await qemuImg.rebaseUnsafe(path.join(work, 'rootfs.qcow2'), base, 'raw');
    // The base is this machine's file now; sizes and the state's digest are checked when the template is used.
    await writeFile(
      path.join(work, 'meta.json'),
      JSON.stringify({ ...meta, base: await fileIdentity(base) }),
    );
    await rename(work, target).catch((error: unknown) => {
      // Another job put it there meanwhile: theirs stays.
      if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    });
    return true;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
