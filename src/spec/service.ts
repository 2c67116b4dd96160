import type { PortSpec } from '../network/ports.js';

/** A HEALTHCHECK in Docker's terms, durations in milliseconds. */
export interface HealthcheckSpec {
  /** ['CMD', program, ...args] runs directly; ['CMD-SHELL', 'command'] runs through /bin/sh -c. */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  retries: number;
}

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
  /** As written; checked when volumes are set up. */
  volumes: string[];
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
}

/** A bad services input or compose file; the message names the source, key path and line where known. */
export class SpecError extends Error {
  override name = 'SpecError';
}

/** Docker's defaults for healthcheck fields left unset. */
const HEALTHCHECK_DEFAULTS = {
  intervalMs: 30_000,
  timeoutMs: 30_000,
  startPeriodMs: 0,
  retries: 3,
} as const;

/** A healthcheck with Docker's defaults where a field is absent or 0. */
export function healthcheck(test: string[], fields: Partial<Omit<HealthcheckSpec, 'test'>>): HealthcheckSpec {
  return {
    test,
    intervalMs: fields.intervalMs || HEALTHCHECK_DEFAULTS.intervalMs,
    timeoutMs: fields.timeoutMs || HEALTHCHECK_DEFAULTS.timeoutMs,
    startPeriodMs: fields.startPeriodMs || HEALTHCHECK_DEFAULTS.startPeriodMs,
    retries: fields.retries || HEALTHCHECK_DEFAULTS.retries,
  };
}

// A partial override would need the image's HEALTHCHECK, which is not known until it is pulled.
export const PARTIAL_HEALTHCHECK =
  "changing only part of the image's HEALTHCHECK is not supported; give the test as well";
