import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolvePolicy } from '../api/bind-policy.js';
import { findRunnerBindDirs } from '../host/runners.js';
import { Daemon } from '../api/daemon.js';
import { startServer } from '../api/server.js';
import { listOption, parseArgs, stringOption, UsageError } from './args.js';
import {
  NETWORK_OPTIONS,
  openJob,
  REGISTRY_OPTIONS,
  type CliEnvironment,
  type Environment,
} from './environment.js';
import { jobOptions } from './job-commands.js';
import type { Io } from './io.js';

const SERVE_OPTIONS = [
  ...NETWORK_OPTIONS,
  ...REGISTRY_OPTIONS,
  { name: 'accel', value: true },
  { name: 'volume-size', value: true },
  { name: 'template', value: true },
  { name: 'socket', value: true },
  { name: 'group', value: true },
  { name: 'tcp', value: true },
  { name: 'stop-containers' },
  { name: 'allow-bind', value: true, multiple: true },
  { name: 'debug' },
];

/**
 * The home of the one user the API's socket admits, when there is one: a
 * daemon's own user's (its socket is that user's), or root's when a root
 * daemon's socket has no --group. A socket shared by a group, or a TCP
 * listener (any local user), cannot tell which caller a request is from,
 * so no home is shared then. Pure.
 */
export function callerHome(
  uid: number,
  home: string,
  group: number | undefined,
  tcp: boolean,
): { dir: string; why: string }[] {
  if (tcp || (uid === 0 && group !== undefined)) return [];
  return [
    {
      dir: home,
      why: uid === 0 ? "root's home; only root may use the socket" : "the home of the socket's user",
    },
  ];
}

/** --allow-bind: absolute host directories. */
function allowedBinds(values: readonly string[]): { dir: string; why: string }[] {
  return values.map((value) => {
    if (!path.isAbsolute(value)) throw new UsageError(`--allow-bind ${value}: give an absolute path`);
    return { dir: path.normalize(value), why: '--allow-bind' };
  });
}

/** The socket `hyper serve` listens on unless told: /run/hyper as root, else the user's runtime dir. Pure. */
export function defaultSocket(vars: Environment, uid: number): string | undefined {
  if (uid === 0) return '/run/hyper/docker.sock';
  const runtime = vars.XDG_RUNTIME_DIR;
  return runtime ? path.join(runtime, 'hyper', 'docker.sock') : undefined;
}

/** `--tcp PORT` or `--tcp HOST:PORT` (loopback only; the server refuses any other host). Pure. */
export function tcpOption(text: string): { host: string; port: number } {
  const match = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port > 65535)
    throw new UsageError(`--tcp ${text}: give PORT or HOST:PORT (HOST 127.0.0.1 or [::1])`);
  return { host: (match[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port };
}

/** A group name or number, as --group takes it, from /etc/group. */
async function groupId(text: string): Promise<number> {
  if (/^\d+$/.test(text)) return Number(text);
  const groups = await readFile('/etc/group', 'utf8').catch(() => '');
  for (const line of groups.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === text && gid) return Number(gid);
  }
  throw new UsageError(`--group ${text}: no such group`);
}

/**
 * Serves the Docker Engine API on a Unix socket over this job's VMs, until
 * SIGTERM or SIGINT; with --stop-containers, what it started is removed then.
 */
export async function serve(argv: string[], io: Io, env: CliEnvironment): Promise<number> {
  const parsed = parseArgs(argv, SERVE_OPTIONS, 0);
  if (parsed.positionals.length > 0) throw new UsageError('hyper serve takes no arguments');
  const socket = stringOption(parsed, 'socket') ?? defaultSocket(env.vars, process.getuid?.() ?? 0);
  if (!socket) throw new UsageError('give --socket PATH: XDG_RUNTIME_DIR is not set');
  const tcpText = stringOption(parsed, 'tcp');
  const groupText = stringOption(parsed, 'group');
  const debug = parsed.options.debug === true || Boolean(env.vars.HYPER_DEBUG);
  // The job's settings, as `hyper run` takes them: flags, else the HYPER_* variables, else the saved ones.
  const job = await openJob(env, jobOptions(parsed, env));
  await job.begin();
  const group = groupText === undefined ? undefined : await groupId(groupText);
  const binds = await resolvePolicy({
    roots: [
      ...allowedBinds(listOption(parsed, 'allow-bind')),
      ...(await findRunnerBindDirs()).map((found) => ({
        dir: found.dir,
        why: found.readOnly ? "a runner's externals" : "a runner's work folder",
        readOnly: found.readOnly,
      })),
      ...callerHome(process.getuid?.() ?? 0, os.homedir(), group, tcpText !== undefined),
    ],
  });
  const daemon = new Daemon(
    job,
    {
      debug: (line) => {
        if (debug) io.err(`debug: ${line}\n`);
      },
      info: (line) => io.err(`${line}\n`),
      warn: (line) => io.err(`warning: ${line}\n`),
    },
    binds,
  );
  const server = await startServer(daemon, {
    socket: path.resolve(socket),
    group,
    tcp: tcpText === undefined ? undefined : tcpOption(tcpText),
  });
  // One request's failure must never take the daemon, and every client's VMs, down with it.
  const unhandled = (error: unknown): void =>
    io.err(
      `warning: hyper serve: unhandled failure: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  process.on('unhandledRejection', unhandled);
  io.err(`hyper serve: listening on unix://${path.resolve(socket)}\n`);
  io.err(
    `hyper serve: bind mounts allowed under ${binds.roots.map((r) => `${r.dir} (${r.why})`).join(', ') || 'no directory (give --allow-bind DIR)'}\n`,
  );
  if (server.tcpAddress)
    io.err(`hyper serve: listening on tcp://${server.tcpAddress.address}:${server.tcpAddress.port}\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  io.err(`hyper serve: ${signal}: stopping\n`);
  process.off('unhandledRejection', unhandled);
  await server.close();
  if (parsed.options['stop-containers'] === true) {
    for (const id of daemon.started) {
      await job
        .remove(id, true)
        .catch((error: unknown) => io.err(`warning: ${id}: ${(error as Error).message}\n`));
    }
  }
  return 0;
}
