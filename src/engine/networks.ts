import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import { isNotFound, readStateFile } from '../files.js';
import type { JobContext } from './context.js';
import { listRecords, writeRecord, type VmRecord } from './record.js';

/**
 * A named network (docker network create). Every named network is the job's
 * one network underneath: its members reach each other by name and alias as
 * the services of `hyper up` do. The name, id and labels are what clients
 * see and filter on; which containers are on it is kept in their records.
 */
export interface NamedNetwork {
  id: string;
  name: string;
  labels: Record<string, string>;
  createdAt: string;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

function networksDir(job: Pick<JobContext, 'stateDir'>): string {
  return path.join(job.stateDir, 'networks');
}

function networkFile(job: Pick<JobContext, 'stateDir'>, name: string): string {
  return path.join(networksDir(job), `${name}.json`);
}

export async function listNamedNetworks(job: Pick<JobContext, 'stateDir'>): Promise<NamedNetwork[]> {
  let files: string[];
  try {
    files = await readdir(networksDir(job));
  } catch (error: unknown) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const networks: NamedNetwork[] = [];
  for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
    const network = await readStateFile<NamedNetwork>(
      path.join(networksDir(job), file),
      `remove the file to forget network ${file.slice(0, -5)}`,
    );
    if (network) networks.push(network);
  }
  return networks;
}

/** The network a reference names: its name, or a unique prefix of its id. */
export async function findNamedNetwork(
  job: Pick<JobContext, 'stateDir'>,
  ref: string,
): Promise<NamedNetwork | undefined> {
  const networks = await listNamedNetworks(job);
  const byName = networks.find((n) => n.name === ref);
  if (byName) return byName;
  const byId = networks.filter((n) => ref.length > 0 && n.id.startsWith(ref));
  if (byId.length > 1)
    throw new HyperError(`network ${ref} is ambiguous (${byId.length} matches)`, { kind: 'Conflict' });
  return byId[0];
}

export async function requireNamedNetwork(
  job: Pick<JobContext, 'stateDir'>,
  ref: string,
): Promise<NamedNetwork> {
  const network = await findNamedNetwork(job, ref);
  if (!network) throw new HyperError(`network ${ref} not found`, { kind: 'NotFound' });
  return network;
}

export async function createNamedNetwork(
  job: Pick<JobContext, 'stateDir'>,
  name: string,
  labels: Record<string, string>,
): Promise<NamedNetwork> {
  if (!NAME.test(name))
    throw new HyperError(`"${name}" is not a valid network name: use letters, digits, "_", "." and "-"`, {
      kind: 'Invalid',
    });
  const network: NamedNetwork = {
    id: randomBytes(32).toString('hex'),
    name,
    labels,
    createdAt: new Date().toISOString(),
  };
  await mkdir(networksDir(job), { recursive: true });
  try {
    // wx: of two creates of one name, one wins and the other is a conflict.
    await writeFile(networkFile(job, name), JSON.stringify(network, null, 2), { flag: 'wx' });
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      throw new HyperError(`network with name ${name} already exists`, { kind: 'Conflict' });
    throw error;
  }
  return network;
}

/** The containers on a network (by their records). */
export async function networkMembers(job: Pick<JobContext, 'stateDir'>, name: string): Promise<VmRecord[]> {
  return (await listRecords(job)).filter((record) => record.networks?.[name] !== undefined);
}

export async function removeNamedNetwork(job: Pick<JobContext, 'stateDir'>, ref: string): Promise<void> {
  const network = await requireNamedNetwork(job, ref);
  const members = await networkMembers(job, network.name);
  if (members.length > 0)
    throw new HyperError(
      `error while removing network: network ${network.name} id ${network.id} has active endpoints (${members.map((m) => m.name).join(', ')})`,
      { kind: 'Conflict' },
    );
  await rm(networkFile(job, network.name), { force: true });
}

/** Puts a container on a named network with these aliases (docker network connect); its peers find it by them. */
export async function connectNamedNetwork(
  job: JobContext,
  record: VmRecord,
  network: NamedNetwork,
  aliases: readonly string[],
): Promise<void> {
  await job.network.addAliases(job.stateDir, record.name, aliases);
  record.networks = { ...(record.networks ?? {}), [network.name]: { aliases: [...aliases] } };
  await writeRecord(record);
}

export async function disconnectNamedNetwork(record: VmRecord, network: NamedNetwork): Promise<void> {
  if (!record.networks?.[network.name])
    throw new HyperError(`container ${record.name} is not connected to network ${network.name}`, {
      kind: 'Invalid',
    });
  const rest = { ...record.networks };
  delete rest[network.name];
  record.networks = rest;
  await writeRecord(record);
}
