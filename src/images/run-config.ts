import type { ImageConfig } from '../types/oci/index.js';

/** The parts of an image config that decide how its service runs. */
export interface ImageRunConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
  stopSignal: string;
  exposedPorts: string[];
  volumes: string[];
  /** The image's HEALTHCHECK, durations in milliseconds; undefined for none or NONE. */
  healthcheck: HealthcheckSpec | undefined;
}

/** A HEALTHCHECK in Docker's terms, durations in milliseconds. */
export interface HealthcheckSpec {
  /** ['CMD', program, ...args] runs directly; ['CMD-SHELL', 'command'] runs through /bin/sh -c. */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  retries: number;
  /** How often to probe during the start period (compose start_interval); else every second at most. */
  startIntervalMs?: number;
}

/** Docker's defaults for healthcheck fields left unset. */
const HEALTHCHECK_DEFAULTS = { intervalMs: 30_000, timeoutMs: 30_000, startPeriodMs: 0, retries: 3 } as const;

/** A healthcheck with Docker's defaults where a field is absent or 0. Pure. */
export function healthcheck(test: string[], fields: Partial<Omit<HealthcheckSpec, 'test'>>): HealthcheckSpec {
  return {
    test,
    intervalMs: fields.intervalMs || HEALTHCHECK_DEFAULTS.intervalMs,
    timeoutMs: fields.timeoutMs || HEALTHCHECK_DEFAULTS.timeoutMs,
    startPeriodMs: fields.startPeriodMs || HEALTHCHECK_DEFAULTS.startPeriodMs,
    retries: fields.retries || HEALTHCHECK_DEFAULTS.retries,
    ...(fields.startIntervalMs ? { startIntervalMs: fields.startIntervalMs } : {}),
  };
}

const NS_PER_MS = 1_000_000;

/** The image's HEALTHCHECK (durations in nanoseconds there); undefined for none or NONE. Pure. */
export function imageHealthcheck(config: ImageConfig): HealthcheckSpec | undefined {
  const check = config.config?.Healthcheck;
  const test = check?.Test ?? [];
  if (test.length === 0 || test[0] === 'NONE') return undefined;
  const ms = (ns: number | undefined): number => Math.round((ns ?? 0) / NS_PER_MS);
  return healthcheck(test, {
    intervalMs: ms(check?.Interval),
    timeoutMs: ms(check?.Timeout),
    startPeriodMs: ms(check?.StartPeriod),
    retries: check?.Retries ?? 0,
  });
}

/** Reads the run settings out of an image config, with Docker's defaults for what is absent. Pure. */
export function imageRunConfig(config: ImageConfig): ImageRunConfig {
  const c = config.config ?? {};
  return {
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    env: c.Env ?? [],
    workingDir: c.WorkingDir || '/',
    user: c.User ?? '',
    stopSignal: c.StopSignal || 'SIGTERM',
    exposedPorts: Object.keys(c.ExposedPorts ?? {}),
    volumes: Object.keys(c.Volumes ?? {}),
    healthcheck: imageHealthcheck(config),
  };
}
