import { spawn } from 'node:child_process';
import { mkdir, open, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { readStateFile, writeFileAtomic } from '../files.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import type { NetworkMember, NetworkRecord } from '../network/job.js';
import { startForwarder, type Forwarder } from '../network/forwarder.js';
import { projectRoot } from '../project-root.js';
import { terminate } from '../process/pids.js';
import { vmState } from './container.js';
import type { JobContext } from './context.js';
import { commandProbe, portsProbe, startingInterval, type Probe } from './health.js';
import { nextHealth, type HealthState } from './health-monitor.js';
import { readRecord } from './record.js';
import { HyperError } from '../errors.js';

/** How often the balancer looks at its replicas' VMs. */
const WATCH_MS = 250;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

/** What a balancer leaves in <state>/balancers/SERVICE.json once it serves. */
interface BalancerState {
  pid: number;
  service: string;
}

function balancerDir(job: Pick<JobContext, 'stateDir'>): string {
  return path.join(job.stateDir, 'balancers');
}

/** The command-line tail that marks a balancer as this job's, for this service (a recycled pid has another). */
function marker(job: Pick<JobContext, 'stateDir'>, service: string): string {
  return `${job.stateDir}\0${service}\0`;
}

/** What the balancer of one replica tracks between looks. */
interface Watch {
  health: HealthState;
  nextProbeAt: number;
  probing: boolean;
  wasRunning: boolean;
}

/**
 * Keeps one service's replicas in rotation while they take connections, and
 * out while they do not: a replica whose VM is gone or stopped, or whose
 * healthcheck fails `retries` times in a row, is taken out until it runs and
 * passes again. In bridge mode the firewall's round robin follows the
 * rotation; in user mode this process is also the forwarder on the
 * service's published ports. Runs until `signal` aborts, or until no
 * replica of the service is left on the job network.
 */
export async function balanceService(
  service: string,
  job: JobContext,
  signal: AbortSignal,
  log: (line: string) => void,
  ready: () => Promise<void>,
): Promise<void> {
  const watches = new Map<string, Watch>();
  // The rotation as this process last decided it: the forwarder follows it at once, the record just after.
  const rotation = new Map<string, string | undefined>();
  let members: NetworkMember[] = [];
  let forwarder: Forwarder | undefined;
  // Whether to forward is decided once, at the first read of the network: its mode never changes.
  let forwarding = false;
  try {
    for (let first = true; !signal.aborted; first = false) {
      const network = await job.network.readNetwork(job.stateDir).catch((error: unknown) => {
        log(`cannot read the job network: ${(error as Error).message}`);
        return null;
      });
      // A damaged record is read again at the next look; a missing one means the job is gone.
      if (network === undefined) return log('the job network is gone; the balancer ends');
      if (network) {
        const group = network.members.filter((m) => m.group === service);
        if (group.length === 0)
          return log(`no replica of ${service} is left on the job network; the balancer ends`);
        members = group;
        await followRotation(group, rotation, watches, job, log);
        if (!forwarding) {
          forwarding = true;
          forwarder = await forwardIfUser(network, group, () =>
            members.filter(
              (m) => (rotation.has(m.service) ? rotation.get(m.service) : m.outOfRotation) === undefined,
            ),
          );
        }
      }
      if (first) {
        await ready();
        log(`balancing ${service} over ${members.map((m) => m.service).join(', ')}`);
      }
      await delay(WATCH_MS, undefined, { signal }).catch(() => undefined);
    }
  } finally {
    await forwarder?.close();
  }
}

/** In user mode, the forwarder on the group's published ports, to the replicas `inRotation` gives. */
async function forwardIfUser(
  network: NetworkRecord,
  group: readonly NetworkMember[],
  inRotation: () => readonly NetworkMember[],
): Promise<Forwarder | undefined> {
  if (network.mode !== 'user') return undefined;
  const ports = (group[0]?.published ?? []).filter((port) => port.protocol === 'tcp');
  return startForwarder(ports, (containerPort) =>
    inRotation().flatMap((member) => {
      if (!('internal' in member)) return [];
      const internal = member.internal.find((i) => i.containerPort === containerPort);
      return internal ? [internal.hostPort] : [];
    }),
  );
}

/**
 * Looks at each replica once and changes the rotation where it must: first
 * in `rotation` (what the forwarder follows), then in the record (what the
 * firewall follows, and `hyper ps` shows), so that a replica shown out of
 * rotation gets no more connections.
 */
async function followRotation(
  group: readonly NetworkMember[],
  rotation: Map<string, string | undefined>,
  watches: Map<string, Watch>,
  job: JobContext,
  log: (line: string) => void,
): Promise<void> {
  for (const member of group) {
    const reason = await reasonOut(member.service, watches, job, log);
    rotation.set(member.service, reason);
    if (reason === member.outOfRotation) continue;
    if (await job.network.setRotation(job.stateDir, member.service, reason))
      log(reason ? `${member.service} out of rotation: ${reason}` : `${member.service} back in rotation`);
  }
}

/** Why a replica should take no connections now, or undefined when it should. Starts its next probe when one is due. */
async function reasonOut(
  name: string,
  watches: Map<string, Watch>,
  job: JobContext,
  log: (line: string) => void,
): Promise<string | undefined> {
  const record = await readRecord(job, name).catch(() => undefined);
  if (!record) return 'its VM was removed';
  const running = (await vmState(record, job)).running;
  const check = record.healthcheck;
  // A replica is in rotation when the balancer starts: up waited for it to be healthy.
  let watch = watches.get(name);
  if (!watch) {
    watch = { health: healthy(), nextProbeAt: 0, probing: false, wasRunning: running };
    watches.set(name, watch);
  }
  if (!running) {
    watch.wasRunning = false;
    return 'its VM is not running';
  }
  if (!watch.wasRunning) {
    // Started again: it takes connections once it passes its healthcheck, or without one, once its ports listen.
    watch.wasRunning = true;
    watch.health = { status: 'starting', failingStreak: 0, log: [] };
    watch.nextProbeAt = 0;
  }
  // Without a healthcheck a replica is probed only while it starts.
  const due = (check !== undefined || watch.health.status === 'starting') && Date.now() >= watch.nextProbeAt;
  if (due && !watch.probing)
    probe(watch, check, check ? commandProbe(record, check, job) : portsProbe(record, job), (line) =>
      log(`${name}: ${line}`),
    );
  if (watch.health.status === 'unhealthy') return 'it is unhealthy';
  if (watch.health.status === 'starting') return 'it is starting';
  return undefined;
}

function healthy(): HealthState {
  return { status: 'healthy', failingStreak: 0, log: [] };
}

/** Runs one probe in the background; its outcome is the replica's health at the next look. */
function probe(
  watch: Watch,
  check: HealthcheckSpec | undefined,
  run: Probe,
  log: (line: string) => void,
): void {
  watch.probing = true;
  const start = new Date();
  void run()
    .catch((error: unknown) => ({ ok: false, detail: (error as Error).message }))
    .then((result) => {
      const before = watch.health.status;
      const outcome = { ok: result.ok, output: result.detail, start, end: new Date() };
      if (check) watch.health = nextHealth(watch.health, check, outcome, false);
      else if (result.ok) watch.health = healthy();
      if (watch.health.status === 'unhealthy' && before !== 'unhealthy')
        log(`healthcheck failed: ${result.detail}`);
      const starting = watch.health.status === 'starting';
      watch.nextProbeAt =
        Date.now() + (check ? (starting ? startingInterval(check) : check.intervalMs) : WATCH_MS);
      watch.probing = false;
    });
}

/** The balancer's state file, once it serves. */
function stateFile(job: Pick<JobContext, 'stateDir'>, service: string): string {
  return path.join(balancerDir(job), `${service}.json`);
}

/** Written by the balancer itself once it serves: what startBalancer waits for, and stopBalancers reads. */
export async function markBalancerReady(job: Pick<JobContext, 'stateDir'>, service: string): Promise<void> {
  await writeFileAtomic(
    stateFile(job, service),
    JSON.stringify({ pid: process.pid, service } satisfies BalancerState),
  );
}

/** Removes the balancer's state file on its way out. */
export async function forgetBalancer(job: Pick<JobContext, 'stateDir'>, service: string): Promise<void> {
  await rm(stateFile(job, service), { force: true });
}

/**
 * Starts `hyper balance` for a service with replicas, detached like the VMs
 * (it outlives this process), with its log in <state>/balancers/SERVICE.log,
 * and waits until it serves.
 */
export async function startBalancer(job: JobContext, service: string): Promise<number> {
  await mkdir(balancerDir(job), { recursive: true });
  const logFile = path.join(balancerDir(job), `${service}.log`);
  const output = await open(logFile, 'a');
  const cli = path.join(projectRoot(), 'dist', 'cli', 'index.js');
  const child = (() => {
    try {
      return spawn(process.execPath, [cli, 'balance', '--state-dir', job.stateDir, service], {
        detached: true,
        stdio: ['ignore', output.fd, output.fd],
        env: { ...process.env, HYPER_STATE_DIR: job.stateDir },
      });
    } finally {
      void output.close();
    }
  })();
  let ended: string | undefined;
  child.once('exit', (code, sig) => (ended = sig ? `was killed by ${sig}` : `exited with code ${code}`));
  child.once('error', (error) => (ended = `could not be started: ${error.message}`));
  child.unref();
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const state = await readStateFile<BalancerState>(stateFile(job, service), '').catch(() => undefined);
    if (state && state.pid === child.pid) return state.pid;
    const tail = async (): Promise<string> =>
      (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n');
    if (ended)
      throw new HyperError(`the balancer of ${service} ${ended} before it served; its log:\n${await tail()}`);
    if (Date.now() >= deadline) {
      child.kill('SIGKILL');
      throw new HyperError(
        `the balancer of ${service} did not serve within ${READY_TIMEOUT_MS / 1000} s; it was killed; its log:\n${await tail()}`,
      );
    }
    await delay(50);
  }
}

/**
 * Stops the job's balancers that `select` says yes to, by their pid (one
 * whose pid is now another process's is only forgotten): SIGTERM, then
 * SIGKILL after 5 s. Returns the services whose balancer it stopped.
 */
export async function stopBalancers(
  job: Pick<JobContext, 'stateDir'>,
  select: (service: string) => boolean = () => true,
): Promise<string[]> {
  const stopped: string[] = [];
  const failures: HyperError[] = [];
  const files = await readdir(balancerDir(job)).catch(() => [] as string[]);
  for (const file of files.filter((f) => f.endsWith('.json'))) {
    const service = file.slice(0, -'.json'.length);
    if (!select(service)) continue;
    const state = await readStateFile<BalancerState>(stateFile(job, service), '').catch(() => undefined);
    try {
      if (state && (await terminate(state.pid, marker(job, service), STOP_TIMEOUT_MS)) !== 'already gone')
        stopped.push(service);
    } catch (error: unknown) {
      // One that will not die keeps its files; the others still go.
      failures.push(
        new HyperError(`the balancer of ${service}: ${(error as Error).message}`, { cause: error }),
      );
      continue;
    }
    await forgetBalancer(job, service);
    await rm(path.join(balancerDir(job), `${service}.log`), { force: true });
  }
  await rmdir(balancerDir(job)).catch(() => undefined);
  if (failures[0]) throw failures[0];
  return stopped;
}
