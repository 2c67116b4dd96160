import { spawn } from 'node:child_process';
import { open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../../errors.js';
import type { ShareSpec } from '../hypervisor.js';
import { isOurProcess, readPid, sleep, waitForExit } from '../../process/pids.js';
import { exists } from '../../files.js';
import { trimOutput } from '../../process/run.js';

/** Debian's qemu-system-common ships it here. */
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const READY_TIMEOUT_MS = 10_000;

/** Where one share's socket, pid and log live in the VM's directory. Pure. */
export function sharePaths(dir: string, index: number): { socket: string; pid: string; log: string } {
  return {
    socket: path.join(dir, `fs${index}.sock`),
    pid: path.join(dir, `fs${index}.pid`),
    log: path.join(dir, `fs${index}.log`),
  };
}

/**
 * The command that serves one share: virtiofsd in a mount namespace of its
 * own, where a read-only share is first bound read-only over itself (C
 * virtiofsd has no read-only mode; the namespace keeps that bind off the
 * host). Pure.
 */
export function virtiofsdArgv(share: ShareSpec, socket: string, program = VIRTIOFSD): string[] {
  const serve = [
    program,
    `--socket-path=${socket}`,
    '-o',
    `source=${share.source}`,
    '-o',
    'cache=auto',
    '-o',
    'xattr',
    '-o',
    'announce_submounts',
  ];
  const script = share.readOnly
    ? 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    : 'shift && exec "$@"';
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', share.source, ...serve];
}

/** Whether shares can be served here: virtiofsd is installed and we are root (it needs to make namespaces). */
export async function canShare(): Promise<boolean> {
  return process.getuid?.() === 0 && (await exists(VIRTIOFSD));
}

/**
 * Starts a virtiofsd for each share, detached like QEMU, and waits for its
 * socket. Each exits on its own once QEMU disconnects; stopShares makes sure.
 * On failure, the ones already started are stopped.
 */
export async function startShares(dir: string, shares: readonly ShareSpec[]): Promise<void> {
  try {
    for (const [index, share] of shares.entries()) await startShare(dir, index, share);
  } catch (error: unknown) {
    await stopShares(dir);
    throw error;
  }
}

async function startShare(dir: string, index: number, share: ShareSpec): Promise<void> {
  const paths = sharePaths(dir, index);
  await rm(paths.socket, { force: true });
  const log = await open(paths.log, 'a');
  try {
    const [program = '', ...args] = virtiofsdArgv(share, paths.socket);
    const child = spawn(program, args, { detached: true, stdio: ['ignore', log.fd, log.fd] });
    let exited: number | null | undefined;
    let failure: Error | undefined;
    child.on('exit', (code) => (exited = code));
    child.on('error', (error) => (failure = error));
    child.unref();
    if (child.pid !== undefined) await writeFile(paths.pid, String(child.pid));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (failure) throw new HyperError(`cannot start virtiofsd for ${share.source}: ${failure.message}`);
      if (exited !== undefined)
        throw new HyperError(
          `virtiofsd for ${share.source} exited at start (code ${exited}): ${await tail(paths.log)}`,
        );
      if (await exists(paths.socket)) return;
      if (Date.now() > deadline)
        throw new HyperError(
          `virtiofsd for ${share.source} did not come up within ${READY_TIMEOUT_MS / 1000} s`,
        );
      await sleep(20);
    }
  } finally {
    await log.close();
  }
}

/** Stops what is left of the VM's virtiofsd processes (by their recorded pids) and removes their sockets. */
export async function stopShares(dir: string): Promise<void> {
  const files = await readdir(dir).catch(() => [] as string[]);
  const indexes = files.flatMap((file) => /^fs(\d+)\.pid$/.exec(file)?.slice(1).map(Number) ?? []);
  for (const index of indexes) {
    const paths = sharePaths(dir, index);
    const pid = await readPid(paths.pid);
    if (pid !== undefined && (await isOurProcess(pid, paths.socket))) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Gone already.
      }
      if (!(await waitForExit(pid, paths.socket, 5000))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Gone already.
        }
        await waitForExit(pid, paths.socket, 5000);
      }
    }
    await rm(paths.pid, { force: true });
    await rm(paths.socket, { force: true });
  }
}

async function tail(file: string): Promise<string> {
  return trimOutput(await readFile(file, 'utf8').catch(() => ''), 5);
}
