import { randomBytes } from 'node:crypto';
import { HyperError } from '../errors.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { parseFilters } from './protocol.js';

function volumeView(
  stateDir: string,
  volume: { name: string; bytes: number },
  createdAt?: string,
): Record<string, unknown> {
  return {
    Name: volume.name,
    Driver: 'local',
    Mountpoint: `${stateDir}/volumes/${volume.name}.qcow2`,
    CreatedAt: createdAt ?? new Date().toISOString(),
    Labels: {},
    Scope: 'local',
    Options: null,
    UsageData: { Size: volume.bytes, RefCount: -1 },
  };
}

async function findVolume(daemon: Daemon, name: string) {
  const volume = (await daemon.job.volumes()).find((v) => v.name === name);
  if (!volume) throw new HyperError(`get ${name}: no such volume`, { kind: 'NotFound' });
  return volume;
}

/** POST /volumes/create: a named volume of the job (an ext4 disk); labels and driver options are not kept. */
export async function createVolume(daemon: Daemon, exchange: Exchange): Promise<void> {
  const body = ((await exchange.json()) ?? {}) as {
    Name?: unknown;
    Driver?: unknown;
    DriverOpts?: unknown;
    Labels?: unknown;
  };
  if (body.Driver !== undefined && body.Driver !== '' && body.Driver !== 'local')
    throw new HyperError(`Driver: "${String(body.Driver)}" is not supported; volumes here are local disks`, {
      kind: 'Invalid',
    });
  if (body.DriverOpts && Object.keys(body.DriverOpts).length > 0)
    throw new HyperError("DriverOpts: not supported; a volume gets the job's volume size", {
      kind: 'Invalid',
    });
  const name = typeof body.Name === 'string' && body.Name !== '' ? body.Name : cryptoName();
  await daemon.job.createVolume(name);
  exchange.send(201, volumeView(daemon.job.context.stateDir, await findVolume(daemon, name)));
}

function cryptoName(): string {
  return randomBytes(32).toString('hex');
}

/** GET /volumes. */
export async function listVolumes(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const volumes = (await daemon.job.volumes()).filter((v) => {
    if (filters.name && !filters.name.some((n) => v.name.includes(n))) return false;
    if (filters.dangling?.includes('true') && v.usedBy.length > 0) return false;
    // A volume keeps no labels: a label filter matches none.
    if (filters.label && filters.label.length > 0) return false;
    return true;
  });
  exchange.send(200, {
    Volumes: volumes.map((v) => volumeView(daemon.job.context.stateDir, v)),
    Warnings: null,
  });
}

export async function inspectVolume(daemon: Daemon, exchange: Exchange, name: string): Promise<void> {
  exchange.send(200, volumeView(daemon.job.context.stateDir, await findVolume(daemon, name)));
}

export async function removeVolume(daemon: Daemon, exchange: Exchange, name: string): Promise<void> {
  await findVolume(daemon, name);
  await daemon.job.removeVolume(name);
  exchange.send(204);
}

/** POST /volumes/prune: the volumes no container has. */
export async function pruneVolumes(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const deleted: string[] = [];
  if (!filters.label || filters.label.length === 0) {
    for (const volume of await daemon.job.volumes()) {
      if (volume.usedBy.length > 0) continue;
      await daemon.job.removeVolume(volume.name);
      deleted.push(volume.name);
    }
  }
  exchange.send(200, { VolumesDeleted: deleted, SpaceReclaimed: 0 });
}
