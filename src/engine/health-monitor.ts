import path from 'node:path';
import { readStateFile, writeFileAtomic } from '../files.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import { setTimeout as delay } from 'node:timers/promises';
import { vmState } from './container.js';
import type { JobContext } from './context.js';
import { commandProbe, startingInterval } from './health.js';
import type { VmRecord } from './record.js';

/** A container's health as Docker's inspect shows it (State.Health). */
export interface HealthState {
  status: 'starting' | 'healthy' | 'unhealthy';
  failingStreak: number;
  /** The last few probes, newest last. */
  log: { start: string; end: string; exitCode: number; output: string }[];
}

const KEEP_PROBES = 5;
/** Until the first pass, probe at least this often, as Docker's start interval does: a CI job should not wait 30 s. */

function healthFile(record: VmRecord): string {
  return path.join(record.machine.dir, 'health.json');
}

/** The health last written for a VM with a healthcheck; undefined when none was probed yet. */
export async function readHealth(record: VmRecord): Promise<HealthState | undefined> {
  if (!record.healthcheck) return undefined;
  return (
    (await readStateFile<HealthState>(healthFile(record), 'it is written again at the next probe').catch(
      () => undefined,
    )) ?? { status: 'starting', failingStreak: 0, log: [] }
  );
}

/** One probe's outcome applied to the health, by Docker's rules. Pure. */
export function nextHealth(
  health: HealthState,
  check: HealthcheckSpec,
  probe: { ok: boolean; output: string; start: Date; end: Date },
  inStartPeriod: boolean,
): HealthState {
  const entry = {
    start: probe.start.toISOString(),
    end: probe.end.toISOString(),
    exitCode: probe.ok ? 0 : 1,
    output: probe.output,
  };
  const log = [...health.log, entry].slice(-KEEP_PROBES);
  if (probe.ok) return { status: 'healthy', failingStreak: 0, log };
  // Failures in the start period do not count, unless the service had already been healthy.
  if (inStartPeriod && health.status === 'starting') return { ...health, log };
  const failingStreak = health.failingStreak + 1;
  return { status: failingStreak >= check.retries ? 'unhealthy' : health.status, failingStreak, log };
}

/**
 * Runs the VM's healthcheck while it runs, keeping its health where inspect
 * reads it, until `signal` aborts or the VM stops. Probes every second until
 * the first pass, then at the check's interval.
 */
export async function monitorHealth(record: VmRecord, job: JobContext, signal: AbortSignal): Promise<void> {
  const check = record.healthcheck;
  if (!check) return;
  const probe = commandProbe(record, check, job);
  const started = Date.now();
  let health: HealthState = { status: 'starting', failingStreak: 0, log: [] };
  await writeFileAtomic(healthFile(record), JSON.stringify(health));
  while (!signal.aborted) {
    const wait = health.status === 'starting' ? startingInterval(check) : check.intervalMs;
    // Aborting ends the wait at once: a daemon that stops is not held up by a 30 s interval.
    await delay(wait, undefined, { signal }).catch(() => undefined);
    if (signal.aborted || !(await vmState(record, job)).running) return;
    const start = new Date();
    const result = await probe().catch((error: unknown) => ({ ok: false, detail: (error as Error).message }));
    const inStartPeriod = Date.now() - started < check.startPeriodMs;
    health = nextHealth(
      health,
      check,
      { ok: result.ok, output: result.detail, start, end: new Date() },
      inStartPeriod,
    );
    await writeFileAtomic(healthFile(record), JSON.stringify(health));
  }
}
