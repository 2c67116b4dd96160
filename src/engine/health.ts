import { HyperError } from '../errors.js';
import { execArgv } from '../guest/config.js';
import type { ExecResult } from '../vm/hypervisor.js';
import { sleep } from '../process/pids.js';
import type { JobContext } from './context.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { VmRecord } from './record.js';
import { vmState } from './container.js';

export class HealthError extends HyperError {
  override name = 'HealthError';
}

/** TCP ports in LISTEN state (st 0A) in /proc/net/tcp and tcp6 text. Pure. */
export function listeningTcpPorts(procNetTcp: string): Set<number> {
  const ports = new Set<number>();
  for (const line of procNetTcp.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    if (!local || fields[3] !== '0A') continue;
    const port = Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (Number.isInteger(port)) ports.add(port);
  }
  return ports;
}

/** The guest argv of one healthcheck run, in the container as the service user. Pure. */
export function healthcheckArgv(
  record: Pick<VmRecord, 'user' | 'workdir'>,
  test: readonly string[],
): string[] {
  const [kind, ...rest] = test;
  if (kind === 'CMD') return execArgv(record, rest);
  if (kind === 'CMD-SHELL') return execArgv(record, ['/bin/sh', '-c', rest.join(' ')]);
  throw new HealthError(`healthcheck test must start with CMD or CMD-SHELL, not ${JSON.stringify(kind)}`);
}

export type Probe = () => Promise<{ ok: boolean; detail: string }>;

/** Listening, inside the guest, on every published container port: what "started" means without a healthcheck. */
export function portsProbe(record: VmRecord, job: JobContext): Probe {
  const wanted = [...new Set(record.ports.filter((p) => p.protocol === 'tcp').map((p) => p.containerPort))];
  return async () => {
    const result = await job.hypervisor.exec(
      record.machine,
      ['/bin/cat', '/proc/net/tcp', '/proc/net/tcp6'],
      10_000,
    );
    const listening = listeningTcpPorts(result.stdout.toString());
    const missing = wanted.filter((port) => !listening.has(port));
    return missing.length === 0
      ? { ok: true, detail: `listening on ${wanted.join(', ') || 'no published tcp port'}` }
      : { ok: false, detail: `not listening on ${missing.join(', ')} yet` };
  };
}

export function commandProbe(record: VmRecord, check: HealthcheckSpec, job: JobContext): Probe {
  const argv = healthcheckArgv(record, check.test);
  return async () => {
    let result: ExecResult;
    try {
      result = await job.hypervisor.exec(record.machine, argv, check.timeoutMs);
    } catch (error: unknown) {
      return { ok: false, detail: (error as Error).message };
    }
    const output = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-3).join(' | ');
    return {
      ok: result.exitCode === 0,
      detail: `exit code ${result.exitCode}${output ? `: ${output}` : ''}`,
    };
  };
}

/**
 * Waits until the service is healthy: its healthcheck passes, or, without one,
 * its published ports listen inside the guest. The check runs at most once a
 * second, however long its declared interval (Docker's default of 30 s would
 * waste a CI job's time), so its retries are not counted: `timeoutMs` alone
 * ends the wait, as does the VM stopping. The error says what was last seen.
 */
/**
 * How often a starting service is probed: at least once a second, however
 * long its interval or start_interval (a job should not wait longer than it
 * must), and sooner when either is shorter. Pure.
 */
export function startingInterval(check: HealthcheckSpec): number {
  return Math.min(check.intervalMs, check.startIntervalMs ?? STARTING_PROBE_MS, STARTING_PROBE_MS);
}

const STARTING_PROBE_MS = 1000;

export async function waitHealthy(
  record: VmRecord,
  check: HealthcheckSpec | undefined,
  job: JobContext,
  timeoutMs: number,
): Promise<void> {
  const probe = check ? commandProbe(record, check, job) : portsProbe(record, job);
  const intervalMs = check ? startingInterval(check) : 250;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await vmState(record, job);
    if (!state.running) {
      throw new HealthError(
        `${record.name} exited with code ${state.exitCode ?? 'unknown'} before it was healthy${state.restarts ? `, after ${state.restarts} restart${state.restarts === 1 ? '' : 's'}` : ''}`,
      );
    }
    const result = await probe().catch((error: unknown) => ({ ok: false, detail: (error as Error).message }));
    // The service may have exited while the probe ran (one with nothing to probe passes at once).
    if (result.ok && (await vmState(record, job)).running) return;
    if (Date.now() + intervalMs > deadline) {
      throw new HealthError(
        `${record.name} did not become healthy within ${Math.round(timeoutMs / 1000)} s (last: ${result.detail})`,
      );
    }
    await sleep(intervalMs);
  }
}
