import { rm } from 'node:fs/promises';
import type { LocalImage } from '../images/image.js';
import { imageRunConfig } from '../images/run-config.js';
import type { MemberRequest } from '../network/job.js';
import type { PublishedPort } from '../network/ports.js';
import type { ContainerSpec } from '../spec/container.js';
import { trimOutput } from '../process/run.js';
import { exists } from '../files.js';
import { errorKind, HyperError } from '../errors.js';
import { removeContainer, requireRecord, vmState } from './container.js';
import { vmDir, type BootContext, type JobContext } from './context.js';
import { waitHealthy } from './health.js';
import type { Reporter } from './host.js';
import type { VmRecord } from './record.js';
import type { StartOrigin } from '../vm/hypervisor.js';
import { resolveFor } from './images.js';
import { runContainer, tcpPorts } from './run.js';
import { restoreService } from './snapshots.js';
import { logText } from './streams.js';
import { importSnapshot } from './import.js';
import { keepServiceTemplate, serviceTemplateName } from './service-templates.js';
import { preStartSpecs, replicaPreStartSpecs, replicaSpecs } from '../spec/plan.js';
import { PreStartError, runPreStart } from './pre-start.js';
import { startBalancer } from './balancer.js';

export interface UpOptions {
  /** How long each service may take from boot to healthy. */
  waitTimeoutMs: number;
  labels: Record<string, string>;
  /** What relative host paths are relative to when the spec does not say (the workspace in Actions). */
  baseDir?: string;
  /** Exports (hyper export files) to resume services from instead of booting them, by service name. */
  checkpoints?: Readonly<Record<string, string>>;
}

export interface ServiceStatus {
  name: string;
  /** The service this VM is one replica of. */
  replicaOf?: string;
  image: string;
  imageDigest: string;
  /** Config digest and blobs, for the action's cache. */
  imageConfigDigest: string;
  imageBlobs: string[];
  accel: string;
  memoryMiB: number;
  ports: PublishedPort[];
  bootMs: number;
  healthyMs: number;
  /** How its VM came up: a full boot, a clone of a boot template, or a checkpoint. */
  origin: StartOrigin;
  /** The snapshot it was started from, when it came from a checkpoint export. */
  restoredFrom?: string;
  /** The service template it was started from or kept as (its directory's name), when it has one. */
  serviceTemplate?: string;
}

/** A service that got no VM: the cause's message, kind and cause kept. */
function failedToStart(service: string, error: unknown): ServiceStartError {
  return new ServiceStartError(
    service,
    `service ${service} failed to start: ${(error as Error).message}`,
    '',
    error,
  );
}

/** A service that failed to come up, with its log for the user. */
export class ServiceStartError extends HyperError {
  override name = 'ServiceStartError';
  constructor(
    readonly service: string,
    message: string,
    readonly log: string,
    cause?: unknown,
  ) {
    super(message, { kind: errorKind(cause), cause });
  }
}

/**
 * Boots services in dependency order: each wave (services whose dependencies
 * are all up) boots in parallel and must be healthy before the next starts.
 * `waves` is validatePlan's answer, which callers get before any side effect.
 */
export async function upServices(
  services: readonly (readonly ContainerSpec[])[],
  job: BootContext,
  options: UpOptions,
  reporter: Reporter,
): Promise<ServiceStatus[]> {
  // A service with replicas boots as one VM per replica, all in its wave.
  const waves = services.map((wave) => wave.flatMap(replicaSpecs));
  const specs = waves.flat();
  // pre_start steps: a service with replicas runs those without per_replica once, before its wave
  // boots, and each replica its per_replica ones; any other service all of its own, before it boots.
  const once = services.flat().filter((spec) => (spec.replicas ?? 1) > 1);
  const stepsOf = (spec: ContainerSpec): ContainerSpec[] =>
    spec.replicaOf ? replicaPreStartSpecs(spec) : preStartSpecs(spec);
  const oneShots = [...once.flatMap(preStartSpecs), ...specs.flatMap(stepsOf)];
  const planned = await Promise.all(specs.map((spec) => planMember(spec, job, reporter)));
  // Steps are planned (their images pulled) now, but each joins the network only while it runs:
  // no peer lists it, and a step that never runs never joins.
  const steps = new Map(
    (await Promise.all(oneShots.map((spec) => planMember(spec, job, reporter)))).map((p) => [
      p.member.service,
      p,
    ]),
  );
  await job.network.joinNetwork(
    job.stateDir,
    job.settings.network,
    planned.map((p) => p.member),
    reporter,
  );
  const images = new Map(planned.map((p) => [p.member.service, p.image]));
  const statuses: ServiceStatus[] = [];
  const initialize = async (service: string, stepSpecs: readonly ContainerSpec[]): Promise<void> => {
    const wanted = stepSpecs.map((step) => ({
      ...step,
      labels: { ...step.labels, ...options.labels },
    }));
    if (wanted.length === 0) return;
    try {
      await runPreStart(service, wanted, steps, job, options.waitTimeoutMs, reporter);
    } catch (error: unknown) {
      if (!(error instanceof PreStartError)) throw error;
      throw new ServiceStartError(error.step, error.message, error.log, error);
    }
  };
  try {
    for (const [index, wave] of waves.entries()) {
      // A service with replicas: its steps without per_replica, once, before any replica boots.
      const initialized = await Promise.allSettled(
        (services[index] ?? [])
          .filter((spec) => once.includes(spec))
          .map((spec) => initialize(spec.name, preStartSpecs(spec))),
      );
      const stepFailure = initialized.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (stepFailure) throw stepFailure.reason;
      const results = await Promise.allSettled(
        wave.map((spec) =>
          bootOne(spec, images.get(spec.name), job, options, reporter, () =>
            initialize(spec.name, stepsOf(spec)),
          ),
        ),
      );
      for (const result of results) if (result.status === 'fulfilled') statuses.push(result.value);
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failure) throw failure.reason;
      // A service of an earlier wave, or of this one, may have exited since it was healthy.
      await checkStillRunning(statuses, job);
      for (const group of new Set(wave.flatMap((spec) => (spec.replicaOf ? [spec.replicaOf] : [])))) {
        const pid = await startBalancer(job, group);
        reporter.info(
          `${group}: balancer (pid ${pid}) spreads its published ports over its healthy replicas`,
        );
      }
    }
  } catch (error: unknown) {
    // Services that never got a VM leave the network; the rest stay for logs and teardown.
    const unbooted = [];
    for (const spec of specs) if (!(await exists(vmDir(job, spec.name)))) unbooted.push(spec.name);
    await job.network.leaveNetwork(job.stateDir, unbooted).catch(() => undefined);
    throw error;
  }
  return statuses;
}

/**
 * Fails, naming the service, its exit code and the tail of its log, when any
 * of `services` is no longer running: a service that exits after it was
 * healthy but before the job's steps start must fail the start as well.
 */
export async function checkStillRunning(
  services: readonly { name: string }[],
  job: JobContext,
): Promise<void> {
  for (const { name } of services) {
    const state = await vmState(await requireRecord(job, name), job);
    if (state.running) continue;
    const log = await logText(name, job);
    const tail = trimOutput(log, 10);
    throw new ServiceStartError(
      name,
      `service ${name} exited with code ${state.exitCode ?? 'unknown'} after it was healthy${tail ? `; the end of its log:\n${tail}` : ''}`,
      log,
    );
  }
}

/**
 * A service's place on the job network, planned before anything boots so
 * every guest starts knowing every other: the image is pulled now for its
 * EXPOSEd ports, and the boot then uses that same image.
 */
async function planMember(
  spec: ContainerSpec,
  job: JobContext,
  reporter: Reporter,
): Promise<{ member: MemberRequest; image: LocalImage }> {
  let image: LocalImage;
  try {
    image = await resolveFor(
      job,
      spec.image,
      (line) => reporter.info(`${spec.name}: ${line}`),
      spec.credentials,
    );
  } catch (error: unknown) {
    throw failedToStart(spec.name, error);
  }
  const member = {
    service: spec.name,
    aliases: spec.aliases ?? [],
    containerPorts: tcpPorts(spec.ports, spec.expose, imageRunConfig(image.config).exposedPorts),
    published: spec.ports,
    ...(spec.replicaOf ? { group: spec.replicaOf } : {}),
  };
  return { member, image };
}

async function bootOne(
  spec: ContainerSpec,
  image: LocalImage | undefined,
  job: BootContext,
  options: UpOptions,
  reporter: Reporter,
  initialize: () => Promise<void>,
): Promise<ServiceStatus> {
  const started = Date.now();
  const exported = options.checkpoints?.[spec.name];
  let record: VmRecord | undefined;
  let restoredFrom: string | undefined;
  if (exported) {
    const resumed = await resumeFromExport(spec, exported, job, reporter);
    record = resumed?.record;
    restoredFrom = resumed?.snapshot;
  }
  // Its pre_start steps, unless it resumed from a checkpoint, which holds what they made.
  if (!record) await initialize();
  try {
    record ??= await runContainer(
      { ...spec, labels: { ...spec.labels, ...options.labels }, baseDir: spec.baseDir ?? options.baseDir },
      job,
      {
        resolved: image,
        log: (line) => reporter.info(`${spec.name}: ${line}`),
        // What pre_start steps leave is theirs to make at each start, not a template's to carry.
        serviceTemplate: !spec.preStart?.length,
      },
    );
  } catch (error: unknown) {
    throw failedToStart(spec.name, error);
  }
  reporter.info(`${spec.name}: VM running after ${record.bootMs} ms, waiting for it to be healthy`);
  try {
    await waitHealthy(record, record.healthcheck, job, options.waitTimeoutMs);
  } catch (error: unknown) {
    throw new ServiceStartError(
      spec.name,
      `service ${spec.name}: ${(error as Error).message}`,
      await logText(spec.name, job),
      error,
    );
  }
  const healthyMs = Date.now() - started;
  reporter.info(`${spec.name}: healthy after ${healthyMs} ms`);
  if (record.serviceTemplate && record.origin !== 'service-template' && !restoredFrom)
    await keepAsTemplate(record, record.serviceTemplate, job, reporter);
  return {
    name: record.name,
    ...(spec.replicaOf ? { replicaOf: spec.replicaOf } : {}),
    image: record.image,
    imageDigest: record.imageDigest,
    imageConfigDigest: record.imageConfigDigest,
    imageBlobs: record.imageBlobs,
    accel: record.machine.accel,
    memoryMiB: record.machine.memoryMiB,
    ports: record.ports,
    bootMs: record.bootMs ?? 0,
    healthyMs,
    origin: record.origin ?? 'boot',
    ...(restoredFrom ? { restoredFrom } : {}),
    ...(record.serviceTemplate ? { serviceTemplate: serviceTemplateName(record.serviceTemplate.key) } : {}),
  };
}

/**
 * Keeps a service that has just become healthy as its service template, for
 * later starts with the same key. A failure is a warning: the service runs on.
 */
async function keepAsTemplate(
  record: VmRecord,
  template: NonNullable<VmRecord['serviceTemplate']>,
  job: BootContext,
  reporter: Reporter,
): Promise<void> {
  try {
    const kept = await keepServiceTemplate(record, template.key, template.base, job, {
      replace: job.settings.templates === 'refresh',
    });
    if (kept) reporter.info(`${record.name}: kept as service template ${kept.dir} in ${kept.tookMs} ms`);
  } catch (error: unknown) {
    reporter.warn(`${record.name}: not kept as a service template: ${(error as Error).message}`);
  }
}

/**
 * Starts a service from an export instead of booting it: import, then restore
 * (a checkpoint resumes; a volume snapshot boots on its volumes). Any failure
 * is a warning and leaves nothing, so the caller boots the service normally.
 */
async function resumeFromExport(
  spec: ContainerSpec,
  file: string,
  job: BootContext,
  reporter: Reporter,
): Promise<{ record: VmRecord; snapshot: string } | undefined> {
  let imported: VmRecord | undefined;
  try {
    const result = await importSnapshot(file, { name: spec.name, image: spec.image }, job);
    imported = result.record;
    await restoreService(spec.name, result.snapshot.name, job, { stopGraceMs: 0 });
    const record = await requireRecord(job, spec.name);
    reporter.info(
      `${spec.name}: started from ${result.snapshot.kind} ${result.snapshot.name} in ${record.bootMs} ms`,
    );
    return { record, snapshot: result.snapshot.name };
  } catch (error: unknown) {
    if (imported) {
      // Its volumes go too: a normal boot starts them empty, as without the checkpoint.
      await removeContainer(spec.name, true, job, { keepMember: true }).catch(() => undefined);
      for (const disk of imported.disks ?? []) if (disk.volume) await rm(disk.path, { force: true });
    }
    reporter.warn(
      `${spec.name}: not started from the saved checkpoint: ${(error as Error).message}; booting it normally`,
    );
    return undefined;
  }
}

/** The `job.services` context shape: `{ db: { ports: { "5432": "49153" } } }`. Pure. */
export function servicesContext(
  statuses: readonly ServiceStatus[],
): Record<string, { ports: Record<string, string> }> {
  return Object.fromEntries(
    byService(statuses).map((s) => [
      s.replicaOf ?? s.name,
      { ports: Object.fromEntries(s.ports.map((p) => [String(p.containerPort), String(p.hostPort)])) },
    ]),
  );
}

/** One variable per published port: HYPER_<SERVICE>_PORT_<CONTAINER PORT>[_UDP] = host port. Pure. */
export function portVariables(statuses: readonly ServiceStatus[]): Record<string, string> {
  const variables: Record<string, string> = {};
  for (const status of byService(statuses)) {
    const service = (status.replicaOf ?? status.name).toUpperCase().replace(/[^A-Z0-9]/g, '_');
    for (const port of status.ports) {
      const suffix = port.protocol === 'udp' ? '_UDP' : '';
      variables[`HYPER_${service}_PORT_${port.containerPort}${suffix}`] = String(port.hostPort);
    }
  }
  return variables;
}

/** One status per service: a service with replicas is its first replica (they share its published ports). Pure. */
function byService(statuses: readonly ServiceStatus[]): ServiceStatus[] {
  const seen = new Set<string>();
  return statuses.filter((s) => {
    const service = s.replicaOf ?? s.name;
    if (seen.has(service)) return false;
    seen.add(service);
    return true;
  });
}
