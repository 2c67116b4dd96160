import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { isNotFound } from '../files.js';
import { createVolumeAhead, DEFAULT_VOLUME_SIZE, volumePath } from '../storage/volumes.js';
import { isVolumeName } from '../storage/mounts.js';
import { HyperError } from '../errors.js';
import type { JobContext } from './context.js';
import { listRecords } from './record.js';

export interface VolumeSummary {
  name: string;
  /** Bytes the qcow2 takes on the host. */
  bytes: number;
  /** The VMs whose record has it attached. */
  usedBy: string[];
}

/** The job's named volumes, with the VMs that use them, by name. */
export async function listVolumes(job: Pick<JobContext, 'stateDir'>): Promise<VolumeSummary[]> {
  let files: string[];
  try {
    files = await readdir(path.join(job.stateDir, 'volumes'));
  } catch (error: unknown) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const records = await listRecords(job);
  const volumes: VolumeSummary[] = [];
  for (const file of files.filter((f) => f.endsWith('.qcow2')).sort()) {
    const name = file.slice(0, -'.qcow2'.length);
    const info = await stat(volumePath(job.stateDir, name));
    volumes.push({
      name,
      bytes: info.blocks * 512,
      usedBy: records.filter((r) => r.disks?.some((d) => d.volume === name)).map((r) => r.name),
    });
  }
  return volumes;
}

/** Removes a named volume; as Docker does, refuses one that a VM, running or not, still has. */
export async function removeVolume(job: Pick<JobContext, 'stateDir'>, name: string): Promise<void> {
  const volume = (await listVolumes(job)).find((v) => v.name === name);
  if (!volume) throw new HyperError(`no such volume: ${name}`, { kind: 'NotFound' });
  if (volume.usedBy.length > 0) {
    throw new HyperError(
      `volume ${name} is in use by ${volume.usedBy.join(', ')}; remove ${volume.usedBy.length > 1 ? 'them' : 'it'} first with "hyper rm"`,
      { kind: 'Conflict' },
    );
  }
  await rm(volumePath(job.stateDir, name));
  await rm(`${volumePath(job.stateDir, name)}.fresh`, { force: true });
}

/** Makes a named volume now (docker volume create) of the job's volume size; an existing one is kept. */
export async function createVolume(
  job: Pick<JobContext, 'stateDir' | 'settings'>,
  name: string,
): Promise<boolean> {
  if (!isVolumeName(name))
    throw new HyperError(`"${name}" is not a valid volume name: use letters, digits, "_", "." and "-"`, {
      kind: 'Invalid',
    });
  return createVolumeAhead(job.stateDir, name, job.settings.volumeSize ?? DEFAULT_VOLUME_SIZE);
}
