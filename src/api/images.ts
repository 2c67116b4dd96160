import { HyperError } from '../errors.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { labelsMatch, parseFilters } from './protocol.js';

/** X-Registry-Auth: base64url JSON {username, password, serveraddress}; "e30=" ({}) means none. */
export function registryAuth(
  header: string | string[] | undefined,
): { username: string; password: string } | undefined {
  const text = Array.isArray(header) ? header[0] : header;
  if (!text) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new HyperError('X-Registry-Auth: not base64url-encoded JSON', { kind: 'Invalid' });
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined;
  const auth = parsed as { username?: unknown; password?: unknown; identitytoken?: unknown };
  if (typeof auth.username === 'string' && auth.username !== '' && typeof auth.password === 'string')
    return { username: auth.username, password: auth.password };
  return undefined;
}

/**
 * POST /images/create?fromImage=&tag=: pulls, with Docker's progress lines.
 * A failure after the stream began is an error line (the docker CLI exits
 * non-zero on it); one found before is a plain error response.
 */
export async function pullImage(daemon: Daemon, exchange: Exchange): Promise<void> {
  const params = exchange.url.searchParams;
  const from = params.get('fromImage');
  if (!from)
    throw new HyperError('fromImage: give the image to pull (importing from a tar is not supported)', {
      kind: 'Invalid',
    });
  const tag = params.get('tag') ?? '';
  const name = !tag ? from : tag.includes(':') ? `${from}@${tag}` : `${from}:${tag}`;
  const credentials = registryAuth(exchange.headers['x-registry-auth']);
  const output = exchange.stream('application/json');
  const line = (value: unknown): boolean => output.write(`${JSON.stringify(value)}\n`);
  line({ status: `Pulling from ${from}`, id: tag || 'latest' });
  try {
    const pulled = await daemon.job.pull(name, (text) => line({ status: text }), credentials);
    line({ status: `Digest: ${pulled.digest}` });
    line({ status: `Status: Downloaded newer image for ${name}` });
  } catch (error: unknown) {
    const message = (error as Error).message;
    line({ errorDetail: { message }, error: message });
  } finally {
    output.end();
  }
}

/** GET /images/json. */
export async function listImages(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const rows: Record<string, unknown>[] = [];
  for (const entry of await daemon.job.images()) {
    const config = await daemon.job.imageConfig(entry).catch(() => undefined);
    const labels = (config?.config?.Labels as Record<string, string> | undefined) ?? {};
    if (filters.label && !labelsMatch(labels, filters.label)) continue;
    if (
      filters.reference &&
      !filters.reference.some((r) => entry.name === r || entry.name.startsWith(`${r}:`))
    )
      continue;
    rows.push({
      Id: entry.configDigest,
      ParentId: '',
      RepoTags: [entry.name],
      RepoDigests: [`${entry.name.replace(/:[^:/]*$/, '')}@${entry.manifestDigest}`],
      Created: Math.floor(Date.parse(config?.created ?? entry.pulledAt) / 1000),
      Size: entry.size,
      SharedSize: -1,
      VirtualSize: entry.size,
      Labels: labels,
      Containers: -1,
    });
  }
  exchange.send(200, rows);
}

async function requireImage(daemon: Daemon, ref: string) {
  const entry = await daemon.job.findImage(ref);
  if (!entry) throw new HyperError(`No such image: ${ref}`, { kind: 'NotFound' });
  return entry;
}

/** GET /images/{name}/json. */
export async function inspectImage(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const entry = await requireImage(daemon, ref);
  const config = await daemon.job.imageConfig(entry);
  const inner = config.config ?? {};
  exchange.send(200, {
    Id: entry.configDigest,
    RepoTags: [entry.name],
    RepoDigests: [`${entry.name.replace(/:[^:/]*$/, '')}@${entry.manifestDigest}`],
    Parent: '',
    Comment: '',
    Created: config.created ?? entry.pulledAt,
    Container: '',
    DockerVersion: '',
    Author: config.author ?? '',
    Config: {
      Hostname: '',
      Domainname: '',
      User: inner.User ?? '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      ExposedPorts: inner.ExposedPorts ?? null,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: inner.Env ?? null,
      Cmd: inner.Cmd ?? null,
      ...(inner.Healthcheck ? { Healthcheck: inner.Healthcheck } : {}),
      Image: '',
      Volumes: inner.Volumes ?? null,
      WorkingDir: inner.WorkingDir ?? '',
      Entrypoint: inner.Entrypoint ?? null,
      OnBuild: null,
      Labels: inner.Labels ?? null,
      StopSignal: inner.StopSignal,
    },
    Architecture: config.architecture,
    Os: config.os,
    Size: entry.size,
    VirtualSize: entry.size,
    RootFS: { Type: 'layers', Layers: config.rootfs?.diff_ids ?? [] },
    Metadata: { LastTagTime: entry.pulledAt },
  });
}

/** DELETE /images/{name}. */
export async function removeImage(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const force = ['1', 'true'].includes(exchange.url.searchParams.get('force') ?? '');
  const entry = await daemon.job.removeImage(ref, force);
  exchange.send(200, [{ Untagged: entry.name }, { Deleted: entry.configDigest }]);
}

/** POST /images/prune: dangling=false (the docker CLI's -a) removes every image no container uses. */
export async function pruneImages(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const all = (filters.dangling ?? []).some((value) => value === 'false' || value === '0');
  const result = await daemon.job.pruneImages(all);
  exchange.send(200, {
    ImagesDeleted: result.removedImages.map((name) => ({ Untagged: name })),
    SpaceReclaimed: result.reclaimedBytes,
  });
}
