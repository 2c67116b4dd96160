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
  healthcheck: ImageHealthcheck | undefined;
}

export interface ImageHealthcheck {
  /** ["CMD", prog, args...] runs directly; ["CMD-SHELL", "cmd"] runs through /bin/sh -c. */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  retries: number;
}

const NS_PER_MS = 1_000_000;

/** Docker's defaults for a HEALTHCHECK that leaves a field unset (0). Pure. */
export function imageHealthcheck(config: ImageConfig): ImageHealthcheck | undefined {
  const check = config.config?.Healthcheck;
  const test = check?.Test ?? [];
  if (test.length === 0 || test[0] === 'NONE') return undefined;
  const ms = (ns: number | undefined, fallback: number): number =>
    ns ? Math.round(ns / NS_PER_MS) : fallback;
  return {
    test,
    intervalMs: ms(check?.Interval, 30_000),
    timeoutMs: ms(check?.Timeout, 30_000),
    startPeriodMs: ms(check?.StartPeriod, 0),
    retries: check?.Retries || 3,
  };
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
