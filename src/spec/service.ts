import type { HealthcheckSpec } from '../images/run-config.js';
import type { PortSpec } from '../network/ports.js';

export { healthcheck, type HealthcheckSpec } from '../images/run-config.js';

export type DependencyCondition = 'service_started' | 'service_healthy';

/** One service, whichever front door it came through: typed, validated, ready to plan. */
export interface ServiceSpec {
  /** The service id (the YAML key); also its hostname. */
  name: string;
  image: string;
  credentials?: { username: string; password: string };
  /** "K=V", in order; a later entry for the same K wins. */
  env: string[];
  ports: PortSpec[];
  /** Docker short syntax, as written (src/storage/mounts.ts parses them). */
  volumes: string[];
  /** Bytes for the named volumes in `volumes` that set a size (compose `driver_opts: { size }`), by name. */
  volumeSizes?: Record<string, number>;
  /** What relative host paths in `volumes` are relative to: the compose file's directory; else the caller's. */
  baseDir?: string;
  /** Replaces the image's Cmd. */
  command?: string[];
  /** Replaces the image's Entrypoint; [] clears it. */
  entrypoint?: string[];
  /** undefined: the image's own HEALTHCHECK. */
  healthcheck?: HealthcheckSpec | 'none';
  memoryMiB?: number;
  /** Whole vCPUs. */
  cpus?: number;
  dependsOn: { service: string; condition: DependencyCondition }[];
  workdir?: string;
  user?: string;
  /** Container paths to mount as tmpfs. */
  tmpfs: string[];
  /** Further names the other services reach this one by (compose `networks: {x: {aliases}}`, `--network-alias`). */
  aliases?: string[];
  /** Container ports the other services may reach besides the image's EXPOSE and `ports` (compose `expose:`). */
  expose?: number[];
}

/** A bad services input or compose file; the message names the source, key path and line where known. */
export class SpecError extends Error {
  override name = 'SpecError';
}

// A partial override would need the image's HEALTHCHECK, which is not known until it is pulled.
export const PARTIAL_HEALTHCHECK =
  "changing only part of the image's HEALTHCHECK is not supported; give the test as well";
