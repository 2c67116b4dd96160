import { checkAliases } from '../network/plan.js';
import { NetworkError } from '../network/settings.js';
import { MountError, planMounts, type ImageMountPlan } from '../storage/mounts.js';
import { SpecError, validateName, type ContainerSpec, type PreStartStep } from './container.js';
import { definedOnly } from './fields.js';

/**
 * Checks one container on its own (`hyper run`, later Docker's create) as
 * validatePlan checks each service of a project, with the messages naming
 * the flag's value rather than a service. Pure.
 */
export function validateContainer(spec: ContainerSpec): void {
  validateName(spec.name);
  try {
    planMounts(spec.volumes, spec.tmpfs, [], spec.baseDir ?? '/', unbuiltImageMounts(spec));
    checkAliases([{ service: spec.name, aliases: spec.aliases ?? [] }]);
  } catch (error: unknown) {
    if (error instanceof MountError || error instanceof NetworkError)
      throw new SpecError(error.message, { cause: error });
    throw error;
  }
  checkPorts([spec]);
}

/**
 * Checks the whole set of services before anything boots: unique names,
 * dependencies that exist and form no cycle, no host port published twice,
 * no wait for the health of a service whose healthcheck is off, and no name
 * on the network (service or alias) given twice. Returns
 * the boot order as waves: each wave's dependencies are all in earlier waves,
 * so a wave can boot in parallel. Pure.
 */
export function validatePlan(specs: readonly ContainerSpec[]): ContainerSpec[][] {
  const byName = new Map<string, ContainerSpec>();
  for (const spec of specs) {
    if (byName.has(spec.name)) throw new SpecError(`service "${spec.name}" is defined twice`);
    byName.set(spec.name, spec);
  }
  checkDependencies(specs, byName);
  checkCycles(specs, byName);
  checkReplicas(specs, byName);
  checkPreStart(specs, byName);
  checkPorts(specs);
  checkMounts(specs);
  try {
    checkAliases(specs.map((spec) => ({ service: spec.name, aliases: spec.aliases ?? [] })));
  } catch (error: unknown) {
    if (error instanceof NetworkError) throw new SpecError(error.message);
    throw error;
  }
  return waves(specs);
}

/** A spec's image mounts, for the checks that need no image: their bases are not built yet. */
export function unbuiltImageMounts(spec: Pick<ContainerSpec, 'imageMounts'>): ImageMountPlan[] {
  return (spec.imageMounts ?? []).map((mount) => ({ ...mount, base: '' }));
}

/** Every mount parses, and no named volume is attached to two services (one ext4 cannot be shared by two VMs). */
function checkMounts(specs: readonly ContainerSpec[]): void {
  const owners = new Map<string, string>();
  for (const spec of specs) {
    let mounts;
    try {
      mounts = planMounts(spec.volumes, spec.tmpfs, [], spec.baseDir ?? '/', unbuiltImageMounts(spec));
    } catch (error: unknown) {
      if (error instanceof MountError) throw new SpecError(`service "${spec.name}": ${error.message}`);
      throw error;
    }
    for (const mount of mounts) {
      if (mount.kind !== 'volume') continue;
      if ((spec.replicas ?? 1) > 1)
        throw new SpecError(
          `volume "${mount.name}" would be attached to the ${spec.replicas} replicas of "${spec.name}"; a volume can be attached to one VM at a time`,
        );
      const owner = owners.get(mount.name);
      if (owner && owner !== spec.name) {
        throw new SpecError(
          `volume "${mount.name}" is used by both "${owner}" and "${spec.name}"; a volume can be attached to one VM at a time`,
        );
      }
      owners.set(mount.name, spec.name);
    }
  }
}

/**
 * A service with replicas: no container_name (it names one container), TCP
 * ports only (connections are spread; datagrams are not), and replica names
 * that are no other service's.
 */
function checkReplicas(specs: readonly ContainerSpec[], byName: ReadonlyMap<string, ContainerSpec>): void {
  for (const spec of specs) {
    const count = spec.replicas ?? 1;
    if (count === 1) continue;
    if (spec.containerName)
      throw new SpecError(
        `service "${spec.name}": container_name "${spec.containerName}" names one container, and it has ${count} replicas; remove container_name or the replicas`,
      );
    const udp = spec.ports.find((port) => port.protocol === 'udp');
    if (udp)
      throw new SpecError(
        `service "${spec.name}" has ${count} replicas and publishes ${udp.containerPort}/udp; a service with replicas publishes TCP ports only`,
      );
    for (const replica of replicaNames(spec)) {
      if (byName.has(replica))
        throw new SpecError(`service "${replica}" has the name of a replica of "${spec.name}"; rename it`);
      validateName(replica);
    }
  }
}

/** Every VM name a service's pre_start steps take is free, and valid. */
function checkPreStart(specs: readonly ContainerSpec[], byName: ReadonlyMap<string, ContainerSpec>): void {
  const taken = new Set(specs.flatMap(replicaNames));
  for (const spec of specs) {
    const names = [...preStartSpecs(spec), ...replicaSpecs(spec).flatMap(replicaPreStartSpecs)].map(
      (step) => step.name,
    );
    for (const name of names) {
      if (taken.has(name) || byName.has(name))
        throw new SpecError(
          `service "${name}" has the name of a pre_start step of "${spec.name}"; rename it`,
        );
      validateName(name);
    }
  }
}

/**
 * The one-shot VMs of a service's pre_start steps that run before the
 * service boots: every step, or for a service with replicas the steps
 * without per_replica, once before any replica. Each is named
 * SERVICE-pre-start-N, N its place in the list. Pure.
 */
export function preStartSpecs(spec: ContainerSpec): ContainerSpec[] {
  const replicated = (spec.replicas ?? 1) > 1;
  return (spec.preStart ?? []).flatMap((step, index) =>
    replicated && step.perReplica ? [] : [preStartSpec(spec, step, `${spec.name}-pre-start-${index + 1}`)],
  );
}

/** The per_replica pre_start steps of one replica (a spec from replicaSpecs), named REPLICA-pre-start-N. Pure. */
export function replicaPreStartSpecs(replica: ContainerSpec): ContainerSpec[] {
  if (!replica.replicaOf) return [];
  return (replica.preStart ?? []).flatMap((step, index) =>
    step.perReplica ? [preStartSpec(replica, step, `${replica.name}-pre-start-${index + 1}`)] : [],
  );
}

/**
 * One pre_start step as a container, as Compose makes it: the service's
 * mounts, environment (the step's over it), files, host entries, memory
 * and vCPUs; the image's entrypoint with the step's command, else the
 * image's; the service's user only where the step runs the service's own
 * image. It answers to no name and publishes nothing.
 */
function preStartSpec(spec: ContainerSpec, step: PreStartStep, name: string): ContainerSpec {
  const ownImage = step.image === undefined;
  return definedOnly({
    name,
    image: step.image ?? spec.image,
    credentials: ownImage ? spec.credentials : undefined,
    env: [...spec.env, ...(step.env ?? [])],
    ports: [],
    volumes: spec.volumes,
    volumeSizes: spec.volumeSizes,
    imageMounts: spec.imageMounts,
    baseDir: spec.baseDir,
    command: step.command,
    healthcheck: 'none' as const,
    memoryMiB: spec.memoryMiB,
    cpus: spec.cpus,
    dependsOn: [],
    workdir: step.workdir ?? spec.workdir,
    user: step.user ?? (ownImage ? spec.user : undefined),
    tmpfs: spec.tmpfs,
    labels: { ...spec.labels, 'hyper.pre-start-of': spec.name },
    extraHosts: spec.extraHosts,
    files: spec.files,
    guest: step.privileged ? { privileged: true } : undefined,
  });
}

/** Whether `name` is one of the names replicaNames gives the replicas of `service`. Pure. */
export function isReplicaName(name: string, service: string): boolean {
  return name.startsWith(`${service}.`) && /^[1-9]\d*$/.test(name.slice(service.length + 1));
}

/** NAME.1 to NAME.N for a service with replicas, else NAME. Pure. */
export function replicaNames(spec: Pick<ContainerSpec, 'name' | 'replicas'>): string[] {
  const count = spec.replicas ?? 1;
  if (count === 1) return [spec.name];
  return Array.from({ length: count }, (_, i) => `${spec.name}.${i + 1}`);
}

/**
 * The VMs a service runs as: itself, or one spec per replica, each answering
 * to its own name and, with its siblings, to the service's name and aliases.
 * Pure.
 */
export function replicaSpecs(spec: ContainerSpec): ContainerSpec[] {
  if ((spec.replicas ?? 1) === 1) return [spec];
  const shared: ContainerSpec = { ...spec };
  delete shared.replicas;
  // Each its own hostname, which also keeps each replica's service template its own.
  return replicaNames(spec).map((name) => ({
    ...shared,
    name,
    hostname: spec.hostname ?? name,
    replicaOf: spec.name,
    aliases: [spec.name, ...(spec.aliases ?? [])],
  }));
}

/**
 * Applies `hyper up --scale SERVICE=N` (each given once) over the replica
 * counts the file gives. Pure.
 */
export function scaleServices(specs: readonly ContainerSpec[], scales: readonly string[]): ContainerSpec[] {
  const wanted = new Map<string, number>();
  for (const scale of scales) {
    const match = /^([^=]+)=(.*)$/.exec(scale);
    if (!match) throw new SpecError(`--scale: "${scale}" is not SERVICE=COUNT`);
    const [, service = '', count = ''] = match;
    if (!specs.some((spec) => spec.name === service))
      throw new SpecError(
        `--scale: there is no service "${service}"; services: ${specs.map((s) => s.name).join(', ')}`,
      );
    if (!/^\d+$/.test(count) || Number(count) < 1)
      throw new SpecError(
        `--scale: "${count}" is not a number of replicas: give a whole number of at least 1`,
      );
    if (wanted.has(service)) throw new SpecError(`--scale: service "${service}" is scaled twice`);
    wanted.set(service, Number(count));
  }
  return specs.map((spec) => {
    const count = wanted.get(spec.name);
    if (count === undefined) return spec;
    const scaled: ContainerSpec = { ...spec, replicas: count };
    if (count === 1) delete scaled.replicas;
    return scaled;
  });
}

function checkDependencies(
  specs: readonly ContainerSpec[],
  byName: ReadonlyMap<string, ContainerSpec>,
): void {
  for (const spec of specs) {
    for (const { service, condition } of spec.dependsOn) {
      const target = byName.get(service);
      if (!target) {
        throw new SpecError(
          `service "${spec.name}" depends on "${service}", which is not defined; services: ${[...byName.keys()].join(', ')}`,
        );
      }
      if (condition === 'service_healthy' && target.healthcheck === 'none') {
        throw new SpecError(
          `service "${spec.name}" waits for "${service}" to be healthy, but "${service}" has its healthcheck disabled`,
        );
      }
    }
  }
}

/** Depth-first, in the order services and dependencies were written, so the cycle reads as written. */
function checkCycles(specs: readonly ContainerSpec[], byName: ReadonlyMap<string, ContainerSpec>): void {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (name: string): void => {
    const at = path.indexOf(name);
    if (at >= 0) {
      const cycle = [...path.slice(at), name].join(' -> ');
      throw new SpecError(`services depend on each other in a cycle: ${cycle}`);
    }
    if (done.has(name)) return;
    path.push(name);
    for (const dependency of byName.get(name)?.dependsOn ?? []) visit(dependency.service);
    path.pop();
    done.add(name);
  };
  for (const spec of specs) visit(spec.name);
}

function checkPorts(specs: readonly ContainerSpec[]): void {
  const owners = new Map<string, string>();
  for (const spec of specs) {
    for (const port of spec.ports) {
      if (port.hostPort === 0) continue;
      const key = `${port.hostPort}/${port.protocol}`;
      const owner = owners.get(key);
      if (owner === spec.name) throw new SpecError(`service "${spec.name}" publishes host port ${key} twice`);
      if (owner !== undefined) {
        throw new SpecError(`services "${owner}" and "${spec.name}" both publish host port ${key}`);
      }
      owners.set(key, spec.name);
    }
  }
}

function waves(specs: readonly ContainerSpec[]): ContainerSpec[][] {
  const result: ContainerSpec[][] = [];
  const booted = new Set<string>();
  let waiting = [...specs];
  while (waiting.length > 0) {
    const wave = waiting.filter((spec) => spec.dependsOn.every((d) => booted.has(d.service)));
    for (const spec of wave) booted.add(spec.name);
    waiting = waiting.filter((spec) => !booted.has(spec.name));
    result.push(wave);
  }
  return result;
}
