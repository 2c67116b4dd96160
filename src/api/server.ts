import { chmod, chown, mkdir, rm, stat } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type Socket } from 'node:net';
import path from 'node:path';
import { HyperError } from '../errors.js';
import {
  attachContainer,
  containerLogs,
  createContainer,
  inspectContainer,
  killContainer,
  listContainers,
  pruneContainers,
  removeContainer,
  restartContainer,
  startContainer,
  stopContainer,
  topContainer,
  waitContainer,
} from './containers.js';
import type { Daemon } from './daemon.js';
import { getArchive, putArchive, statArchive } from './archive.js';
import { createExec, inspectExec, startExec } from './exec.js';
import { httpExchange, upgradeExchange, type Exchange } from './exchange.js';
import { inspectImage, listImages, pruneImages, pullImage, removeImage } from './images.js';
import {
  connectNetwork,
  createNetwork,
  disconnectNetwork,
  inspectNetwork,
  listNetworks,
  pruneNetworks,
  removeNetwork,
} from './networks.js';
import { NotImplementedError, splitVersion, statusFor } from './protocol.js';
import { events, info, ping, version } from './system.js';
import { createVolume, inspectVolume, listVolumes, pruneVolumes, removeVolume } from './volumes.js';

type Handler = (daemon: Daemon, exchange: Exchange, ...params: string[]) => Promise<void> | void;

/** The Engine API paths served; a name in a path may hold "/" (image names), so the patterns say where. */
const ROUTES: readonly [method: string, pattern: RegExp, handler: Handler][] = [
  ['GET', /^\/_ping$/, ping],
  ['HEAD', /^\/_ping$/, ping],
  ['GET', /^\/version$/, version],
  ['GET', /^\/info$/, info],
  ['GET', /^\/events$/, events],

  ['POST', /^\/containers\/create$/, createContainer],
  ['GET', /^\/containers\/json$/, listContainers],
  ['POST', /^\/containers\/prune$/, pruneContainers],
  ['GET', /^\/containers\/([^/]+)\/json$/, inspectContainer],
  ['POST', /^\/containers\/([^/]+)\/start$/, startContainer],
  ['POST', /^\/containers\/([^/]+)\/stop$/, stopContainer],
  ['POST', /^\/containers\/([^/]+)\/kill$/, killContainer],
  ['POST', /^\/containers\/([^/]+)\/restart$/, restartContainer],
  ['POST', /^\/containers\/([^/]+)\/wait$/, waitContainer],
  ['DELETE', /^\/containers\/([^/]+)$/, removeContainer],
  ['GET', /^\/containers\/([^/]+)\/logs$/, containerLogs],
  ['POST', /^\/containers\/([^/]+)\/attach$/, attachContainer],
  ['GET', /^\/containers\/([^/]+)\/top$/, topContainer],
  ['POST', /^\/containers\/([^/]+)\/exec$/, createExec],
  ['HEAD', /^\/containers\/([^/]+)\/archive$/, statArchive],
  ['GET', /^\/containers\/([^/]+)\/archive$/, getArchive],
  ['PUT', /^\/containers\/([^/]+)\/archive$/, putArchive],

  ['POST', /^\/exec\/([^/]+)\/start$/, startExec],
  ['GET', /^\/exec\/([^/]+)\/json$/, inspectExec],

  ['POST', /^\/images\/create$/, pullImage],
  ['GET', /^\/images\/json$/, listImages],
  ['POST', /^\/images\/prune$/, pruneImages],
  ['GET', /^\/images\/(.+)\/json$/, inspectImage],
  ['DELETE', /^\/images\/(.+)$/, removeImage],

  ['POST', /^\/networks\/create$/, createNetwork],
  ['GET', /^\/networks$/, listNetworks],
  ['POST', /^\/networks\/prune$/, pruneNetworks],
  ['GET', /^\/networks\/([^/]+)$/, inspectNetwork],
  ['DELETE', /^\/networks\/([^/]+)$/, removeNetwork],
  ['POST', /^\/networks\/([^/]+)\/connect$/, connectNetwork],
  ['POST', /^\/networks\/([^/]+)\/disconnect$/, disconnectNetwork],

  ['GET', /^\/plugins$/, (_daemon, exchange) => exchange.send(200, [])],
  ['GET', /^\/plugins\/(.+)\/json$/, noPlugin],

  ['POST', /^\/volumes\/create$/, createVolume],
  ['GET', /^\/volumes$/, listVolumes],
  ['POST', /^\/volumes\/prune$/, pruneVolumes],
  ['GET', /^\/volumes\/([^/]+)$/, inspectVolume],
  ['DELETE', /^\/volumes\/([^/]+)$/, removeVolume],
];

/** There are no plugins: each lookup is a 404, which `docker inspect` takes as "not this kind of object". */
function noPlugin(_daemon: Daemon, _exchange: Exchange, name = ''): never {
  throw new HyperError(`plugin "${name}" not found`, { kind: 'NotFound' });
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HyperError(`invalid escape in the path: "${part}"`, { kind: 'Invalid' });
  }
}

/** Finds the handler for a request; 501 naming it when none serves it. Pure. */
export function route(method: string, pathname: string): { handler: Handler; params: string[] } {
  const { path: bare } = splitVersion(pathname);
  for (const [verb, pattern, handler] of ROUTES) {
    if (verb !== method) continue;
    const match = pattern.exec(bare);
    if (match) return { handler, params: match.slice(1).map(decodePart) };
  }
  throw new NotImplementedError(`hyper-services does not implement ${method} ${bare}`);
}

async function serve(daemon: Daemon, exchange: Exchange): Promise<void> {
  const started = Date.now();
  const { method } = exchange;
  let status = 0;
  try {
    const { handler, params } = route(method, exchange.url.pathname);
    await handler(daemon, exchange, ...params);
    status = 200;
  } catch (error: unknown) {
    status = statusFor(error);
    const message = error instanceof Error ? error.message : String(error);
    if (!exchange.sent) exchange.send(status, { message });
    if (status >= 500) daemon.log.warn(`${method} ${exchange.url.pathname}: ${message}`);
  } finally {
    daemon.log.debug(
      `${method} ${exchange.url.pathname}${exchange.url.search} ${status} ${Date.now() - started} ms`,
    );
  }
}

export interface ServeOptions {
  /** The Unix socket to listen on; made mode 0660. */
  socket: string;
  /** The group to own the socket (a name or gid); the caller's own when absent. */
  group?: number | undefined;
  /** A loopback TCP port to listen on as well, when asked for. */
  tcp?: { host: string; port: number } | undefined;
}

export interface RunningServer {
  /** Where the TCP listener is, when there is one. */
  tcpAddress: net.AddressInfo | undefined;
  close(): Promise<void>;
}

/** Listens on the socket (and loopback TCP when asked) and serves the Engine API over the daemon's job. */
export async function startServer(daemon: Daemon, options: ServeOptions): Promise<RunningServer> {
  if (options.tcp && !isLoopback(options.tcp.host))
    throw new HyperError(`--tcp ${options.tcp.host}: the API is served on loopback only (127.0.0.1 or ::1)`, {
      kind: 'Invalid',
    });
  const sockets = new Set<Socket>();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    void serve(daemon, httpExchange(req, res));
  };
  const onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    void serve(daemon, upgradeExchange(req, socket, head));
  };
  const make = (): http.Server => {
    const server = http.createServer({ requestTimeout: 0, headersTimeout: 60_000 }, onRequest);
    server.keepAliveTimeout = 60_000;
    server.on('upgrade', onUpgrade);
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    return server;
  };
  await claimSocketPath(options.socket);
  const unix = make();
  await listen(unix, () => unix.listen(options.socket));
  const servers = [unix];
  daemon.connectApi = () => net.connect({ path: options.socket, allowHalfOpen: true });
  try {
    await chmod(options.socket, 0o660);
    if (options.group !== undefined) await chown(options.socket, process.getuid?.() ?? 0, options.group);
    if (options.tcp) {
      const tcp = make();
      const { host, port } = options.tcp;
      await listen(tcp, () => tcp.listen(port, host));
      servers.push(tcp);
    }
  } catch (error: unknown) {
    await closeAll(servers, sockets);
    await rm(options.socket, { force: true });
    throw error;
  }
  const tcpAddress = servers[1]?.address();
  return {
    tcpAddress: typeof tcpAddress === 'object' && tcpAddress !== null ? tcpAddress : undefined,
    async close() {
      daemon.close();
      await closeAll(servers, sockets);
      await rm(options.socket, { force: true });
    },
  };
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost';
}

function listen(server: http.Server, start: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve();
    });
    start();
  });
}

async function closeAll(servers: readonly http.Server[], sockets: Set<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
}

/**
 * Makes the socket's directory (0755) and takes the path: a socket left by
 * a daemon that is gone is removed; one that answers is another daemon's,
 * and so is anything that is not a socket.
 */
async function claimSocketPath(socket: string): Promise<void> {
  await mkdir(path.dirname(socket), { recursive: true, mode: 0o755 });
  const info = await stat(socket).catch(() => undefined);
  if (!info) return;
  if (!info.isSocket())
    throw new HyperError(`${socket} exists and is not a socket; remove it or give another --socket`, {
      kind: 'Conflict',
    });
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socket);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive)
    throw new HyperError(`another daemon is serving ${socket}; stop it or give another --socket`, {
      kind: 'Conflict',
    });
  await rm(socket, { force: true });
}
