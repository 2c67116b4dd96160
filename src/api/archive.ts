import { HyperError } from '../errors.js';
import type { PathStat } from '../engine/archive.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';

/** Go's os.FileMode bits, which the docker CLI reads in the path-stat header. */
const GO_DIR = 2 ** 31;
const GO_SYMLINK = 2 ** 27;
const GO_PIPE = 2 ** 25;
const GO_SOCKET = 2 ** 24;
const GO_DEVICE = 2 ** 26;
const GO_CHAR_DEVICE = 2 ** 21;
const GO_SETUID = 2 ** 23;
const GO_SETGID = 2 ** 22;
const GO_STICKY = 2 ** 20;

/** A Unix st_mode as Go's FileMode. Pure. */
export function goFileMode(mode: number): number {
  const type = mode & 0o170000;
  let result = mode & 0o777;
  if (type === 0o040000) result += GO_DIR;
  else if (type === 0o120000) result += GO_SYMLINK;
  else if (type === 0o010000) result += GO_PIPE;
  else if (type === 0o140000) result += GO_SOCKET;
  else if (type === 0o060000) result += GO_DEVICE;
  else if (type === 0o020000) result += GO_DEVICE + GO_CHAR_DEVICE;
  if (mode & 0o4000) result += GO_SETUID;
  if (mode & 0o2000) result += GO_SETGID;
  if (mode & 0o1000) result += GO_STICKY;
  return result;
}

/** X-Docker-Container-Path-Stat: base64 of Docker's ContainerPathStat JSON. Pure. */
export function pathStatHeader(stat: PathStat): string {
  const json = {
    name: stat.name,
    size: stat.size,
    mode: goFileMode(stat.mode),
    mtime: new Date(stat.mtime * 1000).toISOString(),
    linkTarget: stat.linkTarget,
  };
  return Buffer.from(JSON.stringify(json)).toString('base64');
}

function pathParam(exchange: Exchange): string {
  const target = exchange.url.searchParams.get('path');
  if (!target) throw new HyperError('path: give the path in the container', { kind: 'Invalid' });
  return target;
}

/** HEAD /containers/{id}/archive: the path's stat, in the header. */
export async function statArchive(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const stat = await daemon.job.statPath(ref, pathParam(exchange));
  exchange.send(200, undefined, { 'X-Docker-Container-Path-Stat': pathStatHeader(stat) });
}

/** GET /containers/{id}/archive: a tar of the path, streamed out of the running VM. */
export async function getArchive(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const controller = new AbortController();
  exchange.closed.addEventListener('abort', () => controller.abort(), { once: true });
  const { stat, tar } = await daemon.job.readArchive(ref, pathParam(exchange), controller.signal);
  const output = exchange.stream('application/x-tar', {
    'X-Docker-Container-Path-Stat': pathStatHeader(stat),
  });
  const errors: Buffer[] = [];
  const drainErrors = (async () => {
    for await (const chunk of tar.stderr) errors.push(chunk);
  })();
  try {
    for await (const chunk of tar.stdout) if (!controller.signal.aborted) output.write(chunk);
    await drainErrors;
    const code = await tar.exitCode;
    if (code !== 0)
      daemon.log.warn(`archive of ${ref}: tar exited ${code}: ${Buffer.concat(errors).toString().trim()}`);
  } catch (error: unknown) {
    // The docker CLI hangs up once it has read the end of the tar; what is left of tar is killed.
    await drainErrors.catch(() => undefined);
    daemon.log.debug(`archive of ${ref}: ${(error as Error).message}`);
  } finally {
    output.end();
  }
}

/** PUT /containers/{id}/archive: unpacks the body (a tar) into the directory at path. */
export async function putArchive(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  await daemon.job.writeArchive(ref, pathParam(exchange), exchange.body() as AsyncIterable<Buffer>);
  exchange.send(200);
}
