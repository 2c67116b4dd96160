import { describeOrigin } from '../engine/record.js';
import type { ServiceStatus } from '../engine/up.js';
import { formatPort } from '../network/ports.js';

/** "2382" for one value, "2267–2930" for several. Pure. */
function range(values: readonly number[]): string {
  const low = Math.min(...values);
  const high = Math.max(...values);
  return low === high ? String(low) : `${low}–${high}`;
}

function startedFrom(status: ServiceStatus): string {
  return status.restoredFrom ? `checkpoint ${status.restoredFrom}` : describeOrigin(status.origin);
}

/**
 * The job summary's rows, one per service, in the order they came up: a
 * service with replicas is one row naming its replicas, with the range of
 * their boot and healthy times. Pure.
 */
export function summaryRows(statuses: readonly ServiceStatus[]): string[][] {
  const services = new Map<string, ServiceStatus[]>();
  for (const status of statuses) {
    const service = status.replicaOf ?? status.name;
    services.set(service, [...(services.get(service) ?? []), status]);
  }
  return [...services].map(([service, group]) => {
    const [first] = group as [ServiceStatus, ...ServiceStatus[]];
    const replicas = group.length > 1 || first.replicaOf !== undefined;
    return [
      replicas ? `${service} (${group.length} replicas: ${group.map((s) => s.name).join(', ')})` : service,
      `${first.image}@${first.imageDigest}`,
      first.accel,
      [...new Set(group.map(startedFrom))].join(', '),
      range(group.map((s) => s.bootMs)),
      range(group.map((s) => s.healthyMs)),
      first.ports.map(formatPort).join(', '),
      replicas ? `${group.length} × ${first.memoryMiB} MiB` : `${first.memoryMiB} MiB`,
    ];
  });
}
