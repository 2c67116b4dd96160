import { checkAliases } from '../network/plan.js';
import { NetworkError } from '../network/settings.js';
import { MountError, planMounts } from '../storage/mounts.js';
import { SpecError, validateName, type ContainerSpec } from './container.js';

/**
 * Checks one container on its own (`hyper run`, later Docker's create) as
 * validatePlan checks each service of a project, with the messages naming
 * the flag's value rather than a service. Pure.
 */
export function validateContainer(spec: ContainerSpec): void {
  validateName(spec.name);
  try {
    planMounts(spec.volumes, spec.tmpfs, [], spec.baseDir ?? '/');
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

/** Every mount parses, and no named volume is attached to two services (one ext4 cannot be shared by two VMs). */
function checkMounts(specs: readonly ContainerSpec[]): void {
  const owners = new Map<string, string>();
  for (const spec of specs) {
    let mounts;
    try {
      mounts = planMounts(spec.volumes, spec.tmpfs, [], spec.baseDir ?? '/');
    } catch (error: unknown) {
      if (error instanceof MountError) throw new SpecError(`service "${spec.name}": ${error.message}`);
      throw error;
    }
    for (const mount of mounts) {
      if (mount.kind !== 'volume') continue;
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
