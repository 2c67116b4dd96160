import { copyFile, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { exists, fileDigest } from '../files.js';
import { run } from '../process/run.js';
import { qemuImg } from '../tools/qemu/img.js';
import { checkpointPaths, vmPaths } from '../vm/paths.js';
import { recordFields } from './create.js';
import type { JobContext } from './context.js';
import {
  BASE,
  FORMAT,
  MANIFEST,
  RAM,
  ROOT,
  scratchDir,
  STATE,
  TransferError,
  VERSION,
  type ExportedFile,
  type ExportManifest,
} from './export-format.js';
import { requireSnapshot } from './snapshots.js';

/** Leaves snapshot `tag` alone in a copied disk holding `snapshots`, with the disk's current state set to it. */
export async function keepOnly(file: string, tag: string, snapshots: readonly string[]): Promise<void> {
  for (const other of snapshots) {
    if (other !== tag) await qemuImg.deleteSnapshot(file, other);
  }
  await qemuImg.applySnapshot(file, tag);
}

/** Fails early, before the VM is paused, when `file` cannot be written. Returns the temp name to write. */
async function claimOutput(file: string): Promise<string> {
  const partial = `${file}.${process.pid}.partial`;
  try {
    const handle = await open(partial, 'wx');
    await handle.close();
  } catch (error: unknown) {
    throw new TransferError(`cannot write ${file}: ${(error as Error).message}`);
  }
  return partial;
}

/**
 * Writes snapshot `name` of `service` to `file` (a tar; gzip when the name
 * ends in .gz or .tgz). A running VM is paused while its disk files are
 * copied. Returns the bytes written. Nothing is left behind when it fails.
 */
export async function exportSnapshot(
  service: string,
  name: string,
  file: string,
  job: JobContext,
): Promise<number> {
  const [record, snapshot] = await requireSnapshot(job, service, name);
  if (snapshot.kind === 'checkpoint' && snapshot.memory !== 'file')
    throw new TransferError(
      `cannot export: checkpoint "${name}" was taken by an earlier hyper-services, which kept the RAM inside the root disk; take the checkpoint again`,
    );
  const mounted = (record.disks ?? []).find((d) => d.image);
  if (mounted?.image)
    throw new TransferError(
      `cannot export ${service}: it mounts the image ${mounted.image.name} on ${mounted.target}, and an export holds only the service's own disks`,
    );
  const target = path.resolve(file);
  if (await exists(target).catch(() => false)) {
    throw new TransferError(`${target} already exists; remove it or choose another file`);
  }
  const partial = await claimOutput(target);
  const staging = await scratchDir(job, 'export');
  try {
    const paths = vmPaths(record.machine.dir);
    const disks = record.disks ?? [];
    const copies: [string, string][] = disks.map((d) => [d.path, `${d.serial}.qcow2`]);
    if (snapshot.kind === 'checkpoint') copies.push([paths.rootDisk, ROOT]);
    const running = await job.hypervisor.isRunning(record.machine);
    if (running) await job.hypervisor.pause(record.machine);
    try {
      for (const [from, entry] of copies) {
        await run({ program: 'cp', args: ['--sparse=always', from, path.join(staging, entry)] });
      }
    } finally {
      if (running) await job.hypervisor.resume(record.machine);
    }
    for (const [, entry] of copies) {
      const copy = path.join(staging, entry);
      const snapshots = await qemuImg.snapshotNames(copy);
      if (snapshots.includes(name)) await keepOnly(copy, name, snapshots);
    }
    const memory = snapshot.kind === 'checkpoint' ? { ram: RAM, state: STATE } : undefined;
    if (memory) {
      const saved = checkpointPaths(record.machine.dir, name);
      await qemuImg.convert(saved.ram, path.join(staging, memory.ram), { from: 'raw', to: 'qcow2' });
      await copyFile(saved.state, path.join(staging, memory.state));
    }
    const base = await backingFile(paths.rootDisk);
    await qemuImg.convert(base, path.join(staging, BASE), { to: 'qcow2' });
    const guestFiles = record.machine.guestFiles.map((g) => ({ name: g.name, entry: `guest-${g.name}` }));
    for (const g of record.machine.guestFiles) await copyFile(g.path, path.join(staging, `guest-${g.name}`));
    const entries = [
      BASE,
      ...copies.map(([, entry]) => entry),
      ...guestFiles.map((g) => g.entry),
      ...(memory ? [memory.ram, memory.state] : []),
    ];
    const files: ExportedFile[] = [];
    for (const entry of entries) {
      const at = path.join(staging, entry);
      files.push({ name: entry, bytes: (await stat(at)).size, sha256: await fileDigest(at) });
    }
    const manifest: ExportManifest = {
      format: FORMAT,
      version: VERSION,
      createdAt: new Date().toISOString(),
      snapshot,
      service: {
        name: record.name,
        ...recordFields(record),
        ports: record.ports,
        disks: disks.map((d) => ({ ...d, path: `${d.serial}.qcow2` })),
        guestFiles,
        ...(snapshot.kind === 'checkpoint' ? { rootDisk: ROOT } : {}),
        network: record.machine.network?.kind === 'tap' ? 'bridge' : 'user',
        ...(record.machine.slots === undefined ? {} : { slots: record.machine.slots }),
      },
      ...(memory ? { memory } : {}),
      files,
    };
    await writeFile(path.join(staging, MANIFEST), JSON.stringify(manifest, null, 2));
    await tar.c({ file: partial, cwd: staging, portable: true, gzip: /\.(t?gz)$/.test(target) }, [
      MANIFEST,
      ...entries,
    ]);
    await rename(partial, target);
    return (await stat(target)).size;
  } finally {
    await rm(partial, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

async function backingFile(overlay: string): Promise<string> {
  const info = await qemuImg.info(overlay, { forceShare: true });
  const base = info.fullBackingFilename ?? info.backingFilename;
  if (!base) throw new TransferError(`${overlay} has no base image`);
  return base;
}
