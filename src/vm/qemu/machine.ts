import { spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { GuestAgent } from '../guest-agent.js';
import type { ExecResult, Hypervisor, MachineSpec } from '../hypervisor.js';
import { MAX_SOCKET_PATH, vmPaths } from '../paths.js';
import { isOurProcess, readPid, sleep, waitForExit } from '../process.js';
import { readGuestStatus } from '../status.js';
import { trimOutput } from '../../process/run.js';
import { qemuArgs } from './args.js';
import { QmpClient } from './qmp.js';

export const QEMU_BINARY = process.env.HYPER_QEMU ?? 'qemu-system-x86_64';

export class VmError extends Error {
  override name = 'VmError';
}

/** The host CPU's clock in kHz, which is what TCG's guest TSC ticks at. */
async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

async function tail(file: string, lines = 20): Promise<string> {
  try {
    return trimOutput(await readFile(file, 'utf8'), lines);
  } catch {
    return '';
  }
}

/** QEMU's microvm machine, started as a detached child that outlives this process. */
export class QemuHypervisor implements Hypervisor {
  async start(spec: MachineSpec): Promise<{ pid: number }> {
    const paths = vmPaths(spec.dir);
    for (const socket of [paths.qmp, paths.agent]) {
      if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
        throw new VmError(
          `state directory path is too long for a unix socket (${socket}); set HYPER_STATE_DIR to a shorter path`,
        );
      }
    }
    const log = await open(paths.qemuLog, 'a');
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: Error | undefined;
    try {
      // Not -daemonize: under TCG with 512 MiB that hung at boot in trials; a detached child did not.
      const child = spawn(QEMU_BINARY, qemuArgs(spec, await hostTscKhz()), {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
      });
      child.on('error', (error) => (spawnError = error));
      child.on('exit', (code, signal) => (exited = { code, signal }));
      child.unref();
      const deadline = Date.now() + 15000;
      for (;;) {
        if (spawnError) throw new VmError(`cannot start ${QEMU_BINARY}: ${spawnError.message}`);
        if (exited) {
          throw new VmError(
            `QEMU exited at start (code ${exited.code ?? exited.signal}): ${await tail(paths.qemuLog)}`,
          );
        }
        const pid = await readPid(paths.pid);
        if (pid !== undefined && (await this.qmpAnswers(paths.qmp))) return { pid };
        if (Date.now() > deadline) {
          await this.kill(spec);
          throw new VmError(`QEMU did not come up within 15 s: ${await tail(paths.qemuLog)}`);
        }
        await sleep(20);
      }
    } finally {
      await log.close();
    }
  }

  private async qmpAnswers(socket: string): Promise<boolean> {
    try {
      const qmp = await QmpClient.connect(socket, 1000);
      qmp.close();
      return true;
    } catch {
      return false;
    }
  }

  async waitUntilRunning(spec: MachineSpec, timeoutMs: number): Promise<void> {
    const paths = vmPaths(spec.dir);
    const deadline = Date.now() + timeoutMs;
    let last = 'nothing yet';
    for (;;) {
      const status = await readGuestStatus(paths.status);
      if (status.failure)
        throw new VmError(`guest init failed: ${status.failure}\n${await tail(paths.console)}`);
      if (status.exitCode !== undefined) {
        throw new VmError(
          `service exited at once with code ${status.exitCode}\n${await tail(paths.serviceLog)}`.trimEnd(),
        );
      }
      if (status.servicePid !== undefined) return;
      if (status.booted) last = 'guest booted, service not started';
      if (!(await this.isRunning(spec))) {
        throw new VmError(`VM stopped while booting (last seen: ${last})\n${await tail(paths.console)}`);
      }
      if (Date.now() > deadline) {
        throw new VmError(
          `VM did not start its service within ${timeoutMs} ms (last seen: ${last})\n${await tail(paths.console)}`,
        );
      }
      await sleep(25);
    }
  }

  async isRunning(spec: MachineSpec): Promise<boolean> {
    const pid = await readPid(vmPaths(spec.dir).pid);
    return pid !== undefined && (await isOurProcess(pid, spec.dir));
  }

  async exec(spec: MachineSpec, argv: string[], timeoutMs: number): Promise<ExecResult> {
    const [program, ...args] = argv;
    if (!program) throw new VmError('no command given');
    const agent = await GuestAgent.connect(vmPaths(spec.dir).agent, 10000);
    try {
      return await agent.exec(program, args, timeoutMs);
    } finally {
      agent.close();
    }
  }

  async stop(spec: MachineSpec, graceMs: number): Promise<'graceful' | 'killed'> {
    const paths = vmPaths(spec.dir);
    const pid = await readPid(paths.pid);
    if (pid === undefined || !(await isOurProcess(pid, spec.dir))) return 'graceful';
    const deadline = Date.now() + graceMs;
    try {
      const agent = await GuestAgent.connect(paths.agent, Math.max(100, Math.min(graceMs, 3000)));
      agent.shutdown();
      // Give qemu-ga a moment to read the command before the socket goes.
      await sleep(50);
      agent.close();
    } catch {
      // No agent: nothing graceful is possible; fall through to the deadline and kill.
    }
    if (await waitForExit(pid, spec.dir, Math.max(0, deadline - Date.now()))) return 'graceful';
    await this.kill(spec);
    return 'killed';
  }

  async kill(spec: MachineSpec): Promise<void> {
    const pid = await readPid(vmPaths(spec.dir).pid);
    if (pid === undefined || !(await isOurProcess(pid, spec.dir))) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    if (!(await waitForExit(pid, spec.dir, 10000)))
      throw new VmError(`QEMU process ${pid} did not exit after SIGKILL`);
  }
}
