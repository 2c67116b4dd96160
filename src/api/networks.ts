import { HyperError } from '../errors.js';
import type { NamedNetwork } from '../engine/networks.js';
import { DEFAULT_NETWORKS } from '../spec/docker-create.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { labelsMatch, parseFilters } from './protocol.js';
import { BRIDGE, networkInspect } from './views.js';

/**
 * The default network as clients see it. Its gateway is given as 127.0.0.1:
 * published ports are bound there, and clients (Testcontainers) take the
 * default network's gateway as the address to reach them on.
 */
async function defaultNetwork(daemon: Daemon): Promise<Record<string, unknown>> {
  const members = (await daemon.job.list()).map((s) => s.record);
  return networkInspect({ id: BRIDGE.id, name: BRIDGE.name, labels: {} }, members, {
    subnet: '127.0.0.0/8',
    gateway: '127.0.0.1',
  });
}

function isDefault(ref: string): boolean {
  return DEFAULT_NETWORKS.has(ref) || ref === BRIDGE.id;
}

async function inspectNamed(daemon: Daemon, network: NamedNetwork): Promise<Record<string, unknown>> {
  return networkInspect(network, await daemon.job.networkMembers(network.name), undefined);
}

function objectBody(value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new HyperError('the request body must be a JSON object', { kind: 'Invalid' });
  return value as Record<string, unknown>;
}

function labelsOf(value: unknown, field: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (
    typeof value !== 'object' ||
    Array.isArray(value) ||
    Object.values(value).some((v) => typeof v !== 'string')
  )
    throw new HyperError(`${field}: must be an object of strings`, { kind: 'Invalid' });
  return value as Record<string, string>;
}

/** POST /networks/create. */
export async function createNetwork(daemon: Daemon, exchange: Exchange): Promise<void> {
  const body = objectBody(await exchange.json());
  const name = body.Name;
  if (typeof name !== 'string' || name === '')
    throw new HyperError('Name: give the network a name', { kind: 'Invalid' });
  if (isDefault(name)) throw new HyperError(`network with name ${name} already exists`, { kind: 'Conflict' });
  if (body.Driver !== undefined && body.Driver !== '' && body.Driver !== 'bridge')
    throw new HyperError(
      `Driver: "${String(body.Driver)}" is not supported; networks here are bridge networks of the job`,
      { kind: 'Invalid' },
    );
  if (body.Internal === true)
    throw new HyperError(
      'Internal: internal networks are not supported yet; the job network egress setting decides what guests reach',
      { kind: 'Invalid' },
    );
  const network = await daemon.job.createNetwork(name, labelsOf(body.Labels, 'Labels'));
  exchange.send(201, { Id: network.id, Warning: '' });
}

/** GET /networks. */
export async function listNetworks(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const rows = [await defaultNetwork(daemon)];
  for (const network of await daemon.job.networks()) rows.push(await inspectNamed(daemon, network));
  exchange.send(
    200,
    rows.filter((row) => {
      const labels = row.Labels as Record<string, string>;
      if (filters.label && !labelsMatch(labels, filters.label)) return false;
      if (filters.name && !filters.name.some((n) => String(row.Name).includes(n))) return false;
      if (filters.id && !filters.id.some((id) => String(row.Id).startsWith(id))) return false;
      return true;
    }),
  );
}

/** GET /networks/{id}. */
export async function inspectNetwork(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  if (isDefault(ref)) return exchange.send(200, await defaultNetwork(daemon));
  exchange.send(200, await inspectNamed(daemon, await daemon.job.network(ref)));
}

/** DELETE /networks/{id}. */
export async function removeNetwork(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  if (isDefault(ref))
    throw new HyperError(`bridge is a pre-defined network and cannot be removed`, { kind: 'Invalid' });
  await daemon.job.removeNetwork(ref);
  exchange.send(204);
}

/** POST /networks/{id}/connect: puts the container on the network with its aliases. */
export async function connectNetwork(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const body = objectBody(await exchange.json());
  const container = body.Container;
  if (typeof container !== 'string' || container === '')
    throw new HyperError('Container: give the container to connect', { kind: 'Invalid' });
  const endpoint = objectBody(body.EndpointConfig ?? undefined);
  const aliases = endpoint.Aliases ?? [];
  if (!Array.isArray(aliases) || aliases.some((a) => typeof a !== 'string'))
    throw new HyperError('EndpointConfig.Aliases: must be a list of strings', { kind: 'Invalid' });
  if (isDefault(ref)) return exchange.send(200);
  await daemon.job.inspect(container).catch((error: unknown) => {
    if (error instanceof HyperError && error.kind === 'NotFound')
      throw new HyperError(`No such container: ${container}`, { kind: 'NotFound' });
    throw error;
  });
  await daemon.job.connect(ref, container, aliases as string[]);
  exchange.send(200);
}

/** POST /networks/{id}/disconnect. */
export async function disconnectNetwork(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const body = objectBody(await exchange.json());
  const container = body.Container;
  if (typeof container !== 'string' || container === '')
    throw new HyperError('Container: give the container to disconnect', { kind: 'Invalid' });
  if (isDefault(ref))
    throw new HyperError(
      'a container cannot leave the default network: it is the job network every VM is on',
      { kind: 'Invalid' },
    );
  await daemon.job.disconnect(ref, container);
  exchange.send(200);
}

/** POST /networks/prune: the named networks no container is on (that match the label filters). */
export async function pruneNetworks(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const deleted: string[] = [];
  for (const network of await daemon.job.networks()) {
    if (filters.label && !labelsMatch(network.labels, filters.label)) continue;
    if ((await daemon.job.networkMembers(network.name)).length > 0) continue;
    await daemon.job.removeNetwork(network.name);
    deleted.push(network.name);
  }
  exchange.send(200, { NetworksDeleted: deleted });
}
