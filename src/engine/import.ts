import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exists } from '../files.js';
import { rewriteNetworkFiles } from '../guest/config.js';
import type { PortSpec } from '../network/ports.js';
import { validateName } from '../spec/container.js';
import type { MountDisk } from '../storage/mounts.js';
import { volumePath } from '../storage/volumes.js';
import { qemuImg } from '../tools/qemu/img.js';
import { checkpointPaths, vmPaths } from '../vm/paths.js';
import { claimStep, createVm, networkStep, newDraft, recordStep, type Draft } from './create.js';
import type { BootContext } from './context.js';
import { BASE, checkExport, extract, scratchDir, TransferError } from './export-format.js';
import type { VmRecord } from './record.js';
import { tcpPorts } from './run.js';
import { checkpointCompatibility, qemuVersion, writeSnapshots, type SnapshotRecord } from './snapshots.js';
import type { Step } from './steps.js';

export interface ImportOptions {
  /** The service's name here; the exported one by default. */
  name?: string | undefined;
  /** Ports to publish; the exported container ports on free host ports by default. */
  ports?: PortSpec[] | undefined;
  /** Refuse an export of another image (the image reference as the service names it). */
  image?: string | undefined;
}

export interface ImportResult {
  record: VmRecord;
  snapshot: SnapshotRecord;
}

/**
 * Makes a stopped service from an export: checks every file against the
 * manifest, refuses a checkpoint this host cannot load, then runs the create
 * steps with the export's disks, guest files and root disk moved into place
 * (named volumes into the job's volumes) instead of made. On failure nothing
 * of it is left, and existing volumes and services are untouched.
 */
export async function importSnapshot(
  file: string,
  options: ImportOptions,
  job: BootContext,
): Promise<ImportResult> {
  const source = path.resolve(file);
  const staging = await scratchDir(job, 'import');
  try {
    await extract(source, staging);
    const manifest = await checkExport(staging, source);
    const { snapshot, service } = manifest;
    if (options.image !== undefined && service.image !== options.image) {
      throw new TransferError(`${source} holds a service of image ${service.image}, not ${options.image}`);
    }
    if (snapshot.kind === 'checkpoint') {
      const problem = await checkpointCompatibility(snapshot, {
        bundle: job.bundle.version,
        accel: job.accel,
        ...(job.cpuModel ? { cpuModel: job.cpuModel } : {}),
        qemu: await qemuVersion(job),
      });
      if (problem) throw new TransferError(`cannot import ${source}: ${problem}`);
    }
    const name = options.name ?? service.name;
    validateName(name);
    for (const disk of service.disks) {
      if (disk.volume && (await exists(volumePath(job.stateDir, disk.volume)))) {
        throw new TransferError(
          `cannot import ${source}: volume ${disk.volume} already exists here; remove it first ("hyper volume rm ${disk.volume}")`,
          { kind: 'Conflict' },
        );
      }
    }
    const published = options.ports ?? service.ports.map((p) => ({ ...p, hostPort: 0 }));
    const exportedOn = service.network ?? 'user';
    const steps: Step<Draft>[] = [
      claimStep(
        (taken) =>
          `the name "${taken}" is already in use by a VM; remove it with "hyper rm ${taken}" or import with --name`,
      ),
      networkStep(() => ({
        service: name,
        aliases: [],
        containerPorts: tcpPorts(published, [], []),
        published,
      })),
      {
        name: 'check the network kind',
        async run(draft) {
          const mode = draft.network?.mode;
          if (snapshot.kind === 'checkpoint' && exportedOn !== mode) {
            throw new TransferError(
              `cannot import ${source}: the checkpoint was taken on a ${exportedOn} network and this job's network is ${mode}; a checkpoint resumes only on the same kind (network ${exportedOn})`,
            );
          }
        },
      },
      moveDisksStep(staging, service.disks),
      moveGuestFilesStep(staging, service.guestFiles),
      moveRootDiskStep(staging, service.rootDisk),
      ...(manifest.memory && snapshot.kind === 'checkpoint'
        ? [moveMemoryStep(staging, manifest.memory, snapshot.name)]
        : []),
      recordStep(service, async (draft) => {
        await writeFile(vmPaths(draft.dir).status, '');
        if (draft.record && snapshot.kind === 'checkpoint') {
          // The device state in the checkpoint is for the layout it was taken in.
          const machine = { ...draft.record.machine };
          delete machine.slots;
          delete machine.controlReader;
          draft.record.machine =
            service.slots === undefined ? machine : { ...machine, slots: service.slots, controlReader: true };
        }
        if (draft.record) await writeSnapshots(draft.record, [snapshot]);
      }),
    ];
    const record = await createVm(newDraft(job, name), steps);
    return { record, snapshot };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** The export's disks: named volumes into the job's volumes, the others into the VM's directory. */
function moveDisksStep(staging: string, disks: readonly MountDisk[]): Step<Draft> {
  const madeVolumes: string[] = [];
  return {
    name: 'move the disks',
    async run(draft) {
      await mkdir(path.join(draft.dir, 'disks'));
      for (const disk of disks) {
        const at = disk.volume
          ? volumePath(draft.job.stateDir, disk.volume)
          : path.join(draft.dir, 'disks', `${disk.serial}.qcow2`);
        if (disk.volume) {
          await mkdir(path.dirname(at), { recursive: true });
          madeVolumes.push(at);
        }
        await rename(path.join(staging, disk.path), at);
        draft.disks.push({ ...disk, path: at });
      }
    },
    async undo() {
      for (const volume of madeVolumes) await rm(volume, { force: true });
    },
  };
}

/** The export's guest files, their network lines rewritten for this job's network. */
function moveGuestFilesStep(staging: string, files: readonly { name: string; entry: string }[]): Step<Draft> {
  return {
    name: 'move the guest files',
    async run(draft) {
      const paths = vmPaths(draft.dir);
      await mkdir(paths.guestFiles);
      for (const g of files) {
        const at = path.join(paths.guestFiles, g.name);
        await rename(path.join(staging, g.entry), at);
        draft.guestFiles.push({ name: g.name, path: at });
      }
      if (!draft.view) throw new TransferError(`${draft.name}: no network view for its guest files`);
      const settingsFile = path.join(paths.guestFiles, 'settings');
      for (const rewritten of rewriteNetworkFiles(await readFile(settingsFile, 'utf8'), draft.view.guest))
        await writeFile(path.join(paths.guestFiles, rewritten.name), rewritten.content);
    },
  };
}

/** The export's base beside the VM, and the root overlay on it: the exported one for a checkpoint, else a new one. */
function moveRootDiskStep(staging: string, rootDisk: string | undefined): Step<Draft> {
  return {
    name: 'move the root disk',
    async run(draft) {
      const paths = vmPaths(draft.dir);
      const base = path.join(draft.dir, BASE);
      await rename(path.join(staging, BASE), base);
      if (rootDisk) {
        await rename(path.join(staging, rootDisk), paths.rootDisk);
        await qemuImg.rebaseUnsafe(paths.rootDisk, base, 'qcow2');
      } else {
        await qemuImg.createOverlay(paths.rootDisk, base, 'qcow2');
      }
    },
  };
}

/** A checkpoint's RAM, back to the raw file a restored VM maps (sparse: qemu-img writes no zeros), and its device state. */
function moveMemoryStep(staging: string, memory: { ram: string; state: string }, tag: string): Step<Draft> {
  return {
    name: "move the checkpoint's memory",
    async run(draft) {
      const saved = checkpointPaths(draft.dir, tag);
      await mkdir(saved.dir, { recursive: true });
      await qemuImg.convert(path.join(staging, memory.ram), saved.ram, { from: 'qcow2', to: 'raw' });
      await rename(path.join(staging, memory.state), saved.state);
    },
  };
}
